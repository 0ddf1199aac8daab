// A no-op persistent command handler for bench/redis.sh: one JSON job per line on stdin,
// one answer line per job on stdout, `{"id", "ok": true, "result": null}`. Ends with stdin.
import readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  const { id } = JSON.parse(line);
  process.stdout.write(`{"id":${JSON.stringify(id)},"ok":true,"result":null}\n`);
}
