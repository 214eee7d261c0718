/**
 * Internal to gress/testing: a canonical text for any value (so outputs compare as multisets whatever their
 * order and object key order), multiset differences, and short printing of counterexamples. Not exported.
 * @module
 */
import fc from "fast-check";

/** A stable text for a value: object keys sorted, Maps and Sets by content, bigint and undefined kept apart. */
export function canonical(value: unknown): string {
  return JSON.stringify(normalise(value, new Set()));
}

function normalise(v: unknown, seen: Set<unknown>): unknown {
  if (v === undefined) return "<undefined>";
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  if (v === null || typeof v !== "object") return v;
  if (seen.has(v)) return "<cycle>";
  seen.add(v);
  try {
    if (Array.isArray(v)) return v.map((x) => normalise(x, seen));
    if (v instanceof Map) return { "<Map>": [...v].map(([k, x]) => [normalise(k, seen), normalise(x, seen)]).sort(byText) };
    if (v instanceof Set) return { "<Set>": [...v].map((x) => normalise(x, seen)).sort(byText) };
    if (v instanceof Date) return { "<Date>": v.toISOString() };
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = normalise((v as Record<string, unknown>)[k], seen);
    return out;
  } finally {
    seen.delete(v);
  }
}

const byText = (a: unknown, b: unknown): number => {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** What one multiset has that the other lacks, each text with its surplus count. */
export interface MultisetDiff {
  /** In `expected`, not (as often) in `actual`. */
  readonly missing: readonly [text: string, times: number][];
  /** In `actual`, not (as often) in `expected`. */
  readonly extra: readonly [text: string, times: number][];
}

/** Compares two lists of texts as multisets. */
export function multisetDiff(expected: readonly string[], actual: readonly string[]): MultisetDiff {
  const counts = new Map<string, number>();
  for (const t of expected) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const t of actual) counts.set(t, (counts.get(t) ?? 0) - 1);
  const missing: [string, number][] = [];
  const extra: [string, number][] = [];
  for (const [t, n] of counts) {
    if (n > 0) missing.push([t, n]);
    else if (n < 0) extra.push([t, -n]);
  }
  return { missing, extra };
}

/** True when the diff is empty. */
export function same(diff: MultisetDiff): boolean {
  return diff.missing.length === 0 && diff.extra.length === 0;
}

/** A few lines saying how `actual` differs from `expected` (at most `limit` entries per side). */
export function describeDiff(diff: MultisetDiff, expectedName: string, actualName: string, show: (text: string) => string = (t) => t, limit = 5): string {
  const list = (entries: readonly [string, number][]): string =>
    entries
      .slice(0, limit)
      .map(([t, n]) => `    ${n > 1 ? `${n} × ` : ""}${show(t)}`)
      .join("\n") + (entries.length > limit ? `\n    … and ${entries.length - limit} more` : "");
  const parts: string[] = [];
  if (diff.missing.length > 0) parts.push(`  in ${expectedName}, missing from ${actualName}:\n${list(diff.missing)}`);
  if (diff.extra.length > 0) parts.push(`  in ${actualName}, not in ${expectedName}:\n${list(diff.extra)}`);
  return parts.join("\n");
}

/** Gives `value` a short form for fast-check's counterexample report (fc.stringify uses toStringMethod). */
export function printedAs<T extends object>(value: T, text: () => string): T {
  Object.defineProperty(value, fc.toStringMethod, { value: text, enumerable: false });
  return value;
}

/**
 * Short text of a value inside a counterexample: like canonical JSON, but without quotes around keys and
 * around strings that are plain words, so that `{card:c1,amount:5}@3` reads at a glance.
 */
export function short(value: unknown): string {
  return brief(normalise(value, new Set()));
}

function brief(v: unknown): string {
  if (typeof v === "string") return /^[\w.:/+=-]+$/.test(v) ? v : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(brief).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v)
      .map(([k, x]) => `${/^[\w$]+$/.test(k) ? k : JSON.stringify(k)}:${brief(x)}`)
      .join(",")}}`;
  }
  return String(v);
}

/**
 * Compares two lists of values as multisets by their canonical text; the report prints them with `show`
 * (default {@link short}). Returns undefined when they are the same, else the report's lines.
 */
export function compareValues<T>(
  expected: readonly T[],
  actual: readonly T[],
  expectedName: string,
  actualName: string,
  show: (value: T) => string = short,
): string | undefined {
  const shown = new Map<string, string>();
  const key = (v: T): string => {
    const k = canonical(v);
    if (!shown.has(k)) shown.set(k, show(v));
    return k;
  };
  const diff = multisetDiff(expected.map(key), actual.map(key));
  return same(diff) ? undefined : describeDiff(diff, expectedName, actualName, (k) => shown.get(k) ?? k);
}
