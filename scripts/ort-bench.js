#!/usr/bin/env node
// Time ONNX Runtime's CPU execution provider on one .onnx model: the peer
// scripts/bench-engine compares tailor against.
//
//   node ort-bench.js MODEL.onnx --threads N --runs R [--warmup W]
//        [--shape 1x3x224x224] [--input X.npy [--expect Y.npy]]
//
// Prints one JSON line:
//   {"median_ms":..,"p10_ms":..,"p90_ms":..,"runs":R,"threads":N, ...}
//
// onnxruntime-node is looked up in $TAILOR_BENCH_DIR, then build/bench next
// to this script's parent, then the usual node resolution; scripts/bench-engine
// installs it there (npm install --ignore-scripts onnxruntime-node).
//
// Input: --input X.npy feeds that tensor (float32, C order); otherwise a
// seeded pseudo-random N(0,1) tensor of the model's input shape (from the
// session's input metadata; --shape overrides, and is required if the
// model's input has symbolic dimensions). With --expect Y.npy the first
// output is compared with Y and max_abs_err / rel_err (max abs error over
// max |Y|) are added to the JSON.
'use strict';

const fs = require('fs');
const path = require('path');

function die(msg) {
  process.stderr.write(`ort-bench: ${msg}\n`);
  process.exit(2);
}

function usage() {
  die('usage: ort-bench.js MODEL.onnx --threads N --runs R [--warmup W] ' +
      '[--shape 1x3x224x224] [--input X.npy [--expect Y.npy]]');
}

function parseArgs(argv) {
  const o = { threads: 1, runs: 30, warmup: 5, shape: null, input: null, expect: null, model: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    const posInt = (v, name, min) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) die(`${name} must be an integer >= ${min}, got '${v}'`);
      return n;
    };
    switch (a) {
      case '--threads': o.threads = posInt(next(), a, 1); break;
      case '--runs': o.runs = posInt(next(), a, 1); break;
      case '--warmup': o.warmup = posInt(next(), a, 0); break;
      case '--shape':
        o.shape = next().split(/[x,]/).map((d) => posInt(d, '--shape dimension', 1));
        break;
      case '--input': o.input = next(); break;
      case '--expect': o.expect = next(); break;
      case '-h': case '--help': usage(); break;
      default:
        if (a.startsWith('-') || o.model) usage();
        o.model = a;
    }
  }
  if (!o.model) usage();
  if (o.expect && !o.input) die('--expect needs --input');
  return o;
}

function loadOrt() {
  const paths = [];
  if (process.env.TAILOR_BENCH_DIR) paths.push(path.resolve(process.env.TAILOR_BENCH_DIR));
  paths.push(path.resolve(__dirname, '..', 'build', 'bench'));
  paths.push(process.cwd());
  let where;
  try {
    where = require.resolve('onnxruntime-node', { paths });
  } catch (e) {
    die(`onnxruntime-node not found in ${paths.join(', ')}; ` +
        'run scripts/bench-engine (or: npm install --ignore-scripts onnxruntime-node there)');
  }
  return require(where);
}

// Minimal .npy reader: little-endian float32, C order, format 1.x-3.x.
function readNpyF32(file) {
  const b = fs.readFileSync(file);
  if (b.toString('latin1', 0, 6) !== '\x93NUMPY') die(`${file}: not a .npy file`);
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = b.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) die(`${file}: cannot parse header ${header}`);
  if (descr[1] !== '<f4') die(`${file}: dtype ${descr[1]}, want <f4 (float32)`);
  if (fortran[1] !== 'False') die(`${file}: Fortran order not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const n = dims.reduce((a, d) => a * d, 1);
  const off = hstart + hlen;
  if (b.length - off < 4 * n) die(`${file}: truncated`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = b.readFloatLE(off + 4 * i);
  return { dims, data };
}

// Deterministic N(0,1) values (mulberry32 + Box-Muller).
function randomNormal(n, seed) {
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

function quantile(sorted, q) {
  if (sorted.length === 1) return sorted[0];
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const round3 = (x) => Math.round(x * 1000) / 1000;

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opt.model)) die(`${opt.model}: no such file`);
  const ort = loadOrt();

  const session = await ort.InferenceSession.create(opt.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });

  if (session.inputNames.length !== 1) {
    die(`model has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); only 1 supported`);
  }
  const inputName = session.inputNames[0];

  let dims;
  let data;
  if (opt.input) {
    ({ dims, data } = readNpyF32(opt.input));
  } else {
    dims = opt.shape;
    if (!dims) {
      const meta = session.inputMetadata && session.inputMetadata[0];
      const shape = meta && meta.isTensor ? meta.shape : null;
      if (!shape || !shape.every((d) => Number.isInteger(d) && d > 0)) {
        die(`cannot tell the input shape of '${inputName}' (${JSON.stringify(shape)}); pass --shape e.g. 1x3x224x224`);
      }
      if (meta.type !== 'float32') die(`input '${inputName}' is ${meta.type}, only float32 supported`);
      dims = shape;
    }
    data = randomNormal(dims.reduce((a, d) => a * d, 1), 1234);
  }
  const feeds = { [inputName]: new ort.Tensor('float32', data, dims) };

  let check = {};
  if (opt.expect) {
    const exp = readNpyF32(opt.expect);
    const out = (await session.run(feeds))[session.outputNames[0]];
    if (out.data.length !== exp.data.length) {
      die(`output has ${out.data.length} values, ${opt.expect} has ${exp.data.length}`);
    }
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < exp.data.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(out.data[i] - exp.data[i]));
      maxRef = Math.max(maxRef, Math.abs(exp.data[i]));
    }
    check = { max_abs_err: maxErr, rel_err: maxRef > 0 ? maxErr / maxRef : maxErr };
  }

  for (let i = 0; i < opt.warmup; i++) await session.run(feeds);

  const times = [];
  for (let i = 0; i < opt.runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    const t1 = process.hrtime.bigint();
    times.push(Number(t1 - t0) / 1e6);
  }
  const sorted = times.slice().sort((a, b) => a - b);
  const result = {
    median_ms: round3(quantile(sorted, 0.5)),
    p10_ms: round3(quantile(sorted, 0.1)),
    p90_ms: round3(quantile(sorted, 0.9)),
    min_ms: round3(sorted[0]),
    mean_ms: round3(times.reduce((a, t) => a + t, 0) / times.length),
    runs: opt.runs,
    threads: opt.threads,
    warmup: opt.warmup,
    // Whole node process, so it includes node's own ~40-50 MiB.
    process_peak_rss_mib: round3(process.resourceUsage().maxRSS / 1024),
    ort_version: (ort.env && ort.env.versions && ort.env.versions.node) || null,
    model: path.basename(opt.model),
    ...check,
  };
  await session.release();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
