/**
 * Sums JUnit reports from `deno test --junit-path` and `bun test
 * --reporter=junit` into one line, `N passed, N failed`, counting leaf test
 * cases only (Deno also reports each `describe` as a test case).
 *
 * Usage: deno run --allow-read scripts/junit_summary.ts REPORT.xml…
 */

interface Case {
  name: string;
  failed: boolean;
  skipped: boolean;
}

function unescape(text: string): string {
  return text.replaceAll("&gt;", ">").replaceAll("&lt;", "<").replaceAll("&quot;", '"')
    .replaceAll("&apos;", "'").replaceAll("&amp;", "&");
}

function cases(xml: string): Case[] {
  const found: Case[] = [];
  const pattern = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const match of xml.matchAll(pattern)) {
    const name = unescape(/\bname="([^"]*)"/.exec(match[1]!)?.[1] ?? "");
    const body = match[3] ?? "";
    found.push({ name, failed: /<(failure|error)\b/.test(body), skipped: /<skipped\b/.test(body) });
  }
  // A case that is the parent of others ("a" of "a > b") is a group.
  return found.filter((c) => !found.some((o) => o.name.startsWith(`${c.name} > `)));
}

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of Deno.args) {
  let xml: string;
  try {
    xml = await Deno.readTextFile(file);
  } catch {
    console.log(`${file}: no report (the run did not finish)`);
    failed++;
    continue;
  }
  const all = cases(xml);
  const f = all.filter((c) => c.failed).length;
  const s = all.filter((c) => c.skipped).length;
  console.log(`${file}: ${all.length - f - s} passed, ${f} failed${s ? `, ${s} skipped` : ""}`);
  for (const c of all.filter((c) => c.failed)) console.log(`  FAILED: ${c.name}`);
  passed += all.length - f - s;
  failed += f;
  skipped += s;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
Deno.exit(failed > 0 || passed === 0 ? 1 : 0);
