// Encode texts with tokenizers.js (the tokenizer runtime of transformers.js), for lib/parity.py.
//
//   node scripts/js/parity.mjs TOKENIZER_DIR < texts.jsonl > ids.jsonl
//
// Reads TOKENIZER_DIR/tokenizer.json and tokenizer_config.json as transformers.js does. Each input line
// is a JSON string; each output line is the JSON list of its ids (no special tokens added), in order.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Tokenizer } from "@huggingface/tokenizers";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/js/parity.mjs TOKENIZER_DIR < texts.jsonl > ids.jsonl");
  process.exit(2);
}
const read = (name) => JSON.parse(readFileSync(`${dir}/${name}`, "utf8"));
let tokenizer;
try {
  tokenizer = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
} catch (error) {
  console.error(`error: ${dir}: tokenizers.js cannot load this tokenizer: ${error.message}`);
  process.exit(1);
}
const out = [];
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line) out.push(JSON.stringify(tokenizer.encode(JSON.parse(line), { add_special_tokens: false }).ids));
  if (out.length >= 1000) process.stdout.write(out.splice(0).join("\n") + "\n");
}
if (out.length) process.stdout.write(out.join("\n") + "\n");
