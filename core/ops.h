/*
 * ops.h - the operators tailor's engine knows, as one table.
 *
 * TL_OP_MAP generates the enum and the ONNX name of each op so that the two
 * cannot drift apart; the prepare/run pair of each op lives in core/op_*.c
 * and is listed in op.c's op table.
 */
#ifndef TL_OPS_H
#define TL_OPS_H

/* XX(ENUM_SUFFIX, "OnnxName") */
#define TL_OP_MAP(XX)                                                                              \
  XX(CONV, "Conv")                                                                                 \
  XX(BATCHNORM, "BatchNormalization")                                                              \
  XX(RELU, "Relu")                                                                                 \
  XX(CLIP, "Clip")                                                                                 \
  XX(HARDSWISH, "HardSwish")                                                                       \
  XX(HARDSIGMOID, "HardSigmoid")                                                                   \
  XX(SIGMOID, "Sigmoid")                                                                           \
  XX(ADD, "Add")                                                                                   \
  XX(SUB, "Sub")                                                                                   \
  XX(MUL, "Mul")                                                                                   \
  XX(DIV, "Div")                                                                                   \
  XX(MAXPOOL, "MaxPool")                                                                           \
  XX(AVGPOOL, "AveragePool")                                                                       \
  XX(GLOBALAVGPOOL, "GlobalAveragePool")                                                           \
  XX(FLATTEN, "Flatten")                                                                           \
  XX(RESHAPE, "Reshape")                                                                           \
  XX(GEMM, "Gemm")                                                                                 \
  XX(MATMUL, "MatMul")                                                                             \
  XX(CONCAT, "Concat")                                                                             \
  XX(SOFTMAX, "Softmax")                                                                           \
  XX(IDENTITY, "Identity")                                                                         \
  XX(DROPOUT, "Dropout")                                                                           \
  XX(CONSTANT, "Constant")                                                                         \
  XX(SHAPE, "Shape")                                                                               \
  XX(GATHER, "Gather")                                                                             \
  XX(UNSQUEEZE, "Unsqueeze")                                                                       \
  XX(SQUEEZE, "Squeeze")                                                                           \
  XX(RESIZE, "Resize")

enum tl_op {
#define TL__OP_ENUM(e, name) TL_OP_##e,
  TL_OP_MAP(TL__OP_ENUM)
#undef TL__OP_ENUM
      TL_OP_COUNT
};

/* The ONNX op_type of op ("Conv"); "?" for an out-of-range value. */
const char *tl_op_name(enum tl_op op);

/* The op whose ONNX op_type is name, or TL_OP_COUNT if tailor has none. */
enum tl_op tl_op_lookup(const char *name);

#endif
