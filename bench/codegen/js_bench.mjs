// Times a generated ES module (warm JIT) on float32 rows read from a file, for bench_codegen.py.
// Arguments: module path, rows file (int32 n, int32 n_features, float32 data), seconds of
// warm-up, repeats. Prints "batch <wall s> <cpu s>" per repeat, then
// "single <wall s> <cpu s> <calls>" for single-row predict() calls.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [path, rowsFile, warmArg, repeatsArg] = process.argv.slice(2);
const m = await import(pathToFileURL(path).href);
const raw = readFileSync(rowsFile);
const head = new DataView(raw.buffer, raw.byteOffset, 8);
const n = head.getInt32(0, true);
const nf = head.getInt32(4, true);
const x = new Float32Array(raw.buffer.slice(raw.byteOffset + 8, raw.byteOffset + 8 + 4 * n * nf));
const warm = Number(warmArg);
const repeats = Number(repeatsArg);
const out = new Float32Array(n * m.N_OUTPUTS);
const labels = new Int32Array(n);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
let t0 = performance.now();
while ((performance.now() - t0) / 1e3 < warm) m.predictBatch(x, n, out, labels);
for (let k = 0; k < repeats; k++) {
  const s = performance.now();
  const c0 = cpu();
  m.predictBatch(x, n, out, labels);
  console.log(`batch ${(performance.now() - s) / 1e3} ${cpu() - c0}`);
}
const calls = Math.min(n, 20000);
const rows = [];
for (let i = 0; i < calls; i++) rows.push(Array.from(x.subarray(i * nf, (i + 1) * nf)));
t0 = performance.now();
while ((performance.now() - t0) / 1e3 < warm / 2) for (let i = 0; i < calls; i++) m.predict(rows[i]);
for (let k = 0; k < repeats; k++) {
  const s = performance.now();
  const c0 = cpu();
  for (let i = 0; i < calls; i++) m.predict(rows[i]);
  console.log(`single ${(performance.now() - s) / 1e3} ${cpu() - c0} ${calls}`);
}
