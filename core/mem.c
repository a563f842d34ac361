/*
 * mem.c - memory that lives as long as its owner: what a plan's prepare
 * functions allocate (steps' parameters, BN vectors, transformed
 * weights), in blocks freed all at once with the plan.
 *
 * A room of its own so that the kernels and ops that allocate depend on
 * nothing above them; a plan's arena and scratch are plan.c's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

struct tl_mem_block {
  struct tl_mem_block *next;
  max_align_t data[];
};

void *tl__mem_alloc(struct tl_mem *mem, size_t bytes) {
  if (bytes > SIZE_MAX - sizeof(struct tl_mem_block) - TL_ARENA_ALIGN)
    return NULL;
  struct tl_mem_block *b = calloc(1, sizeof *b + bytes + 1);
  if (b == NULL)
    return NULL;
  b->next = mem->blocks;
  mem->blocks = b;
  mem->bytes += sizeof *b + bytes;
  return b->data;
}

void tl__mem_free(struct tl_mem *mem) {
  while (mem->blocks != NULL) {
    struct tl_mem_block *b = mem->blocks;
    mem->blocks = b->next;
    free(b);
  }
  mem->bytes = 0;
}
