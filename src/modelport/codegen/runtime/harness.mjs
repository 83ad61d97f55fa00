// Runs generated ES modules on rows from files and writes their scores, for modelport's --check
// and conformance suite. Arguments: triples of (module path, input file, output file); the file
// formats are those of Harness.java. Every row is also scored through predict(row) and
// predictLabel(row); a difference from predictBatch is an error (exit code 3).
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
for (let a = 0; a + 3 <= args.length; a += 3) {
  const m = await import(pathToFileURL(args[a]).href);
  const raw = readFileSync(args[a + 1]);
  const head = new DataView(raw.buffer, raw.byteOffset, 8);
  const n = head.getInt32(0, true);
  const nf = head.getInt32(4, true);
  const x = new Float32Array(raw.buffer.slice(raw.byteOffset + 8, raw.byteOffset + 8 + 4 * n * nf));
  const { scores, labels } = m.predictBatch(x, n);
  const no = m.N_OUTPUTS;
  for (let i = 0; i < n; i++) {
    const row = Array.from(x.subarray(i * nf, (i + 1) * nf));
    const s = m.predict(row);
    const label = m.predictLabel(row);
    const want = m.CLASSES === null || labels[i] < 0 ? null : m.CLASSES[labels[i]];
    for (let j = 0; j < no; j++) {
      const same = Object.is(s[j], scores[i * no + j]) || (s[j] !== s[j] && scores[i * no + j] !== scores[i * no + j]);
      if (!same || label !== want) {
        console.error(`${args[a]}: row ${i} scores differently through predict(row) or predictLabel than through predictBatch`);
        process.exit(3);
      }
    }
  }
  const out = Buffer.alloc(8 + 4 * n * no + 4 * n);
  out.writeInt32LE(n, 0);
  out.writeInt32LE(no, 4);
  for (let q = 0; q < n * no; q++) out.writeFloatLE(scores[q], 8 + 4 * q);
  for (let i = 0; i < n; i++) out.writeInt32LE(labels[i], 8 + 4 * n * no + 4 * i);
  writeFileSync(args[a + 2], out);
}
