/**
 * Validation of options at the API boundary with zod. A failure throws a {@link ConfigError} whose message
 * names each bad field (`window.size: expected a positive number, got -5`) and whose `issues` carry them
 * as data.
 * @module
 */
import type { z } from "zod";
import { type ConfigIssue, ConfigError } from "./errors.ts";

/**
 * Parses `input` with `schema`, or throws a ConfigError naming `where` and every bad field.
 *
 * @example
 * ```ts
 * import { validate } from "gress";
 * import { z } from "zod";
 *
 * // Validates options of your own operators with the same errors as Gress's: a ConfigError naming the field.
 * const options = validate(z.strictObject({ thresholdMs: z.number().positive() }), { thresholdMs: 500 }, "myOperator");
 * ```
 */
export function validate<S extends z.ZodType>(schema: S, input: unknown, where: string): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const issues: ConfigIssue[] = result.error.issues.map((i) => ({
    path: [where, ...i.path.map((p) => (typeof p === "symbol" ? String(p) : p))],
    code: i.code,
    message: messageOf(i),
  }));
  const text = issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
  throw new ConfigError(`invalid options: ${text}`, issues, { cause: result.error });
}

/** zod's message for one issue, with the value that was given: "required" for a missing field. */
function messageOf(i: z.core.$ZodIssue): string {
  if (!("input" in i) || i.code === "unrecognized_keys") return i.message;
  // zod 4 says "Invalid input: expected string, received undefined"; the value itself says more.
  const expected = i.message.replace(/, received [^,]*$/, "");
  if (i.input === undefined && i.code === "invalid_type") {
    return /^Invalid input: expected /.test(i.message) ? `required (${expected.replace(/^Invalid input: /, "")})` : i.message;
  }
  return `${expected}, got ${show(i.input)}`;
}

function show(value: unknown): string {
  if (typeof value === "function") return "a function";
  if (typeof value === "bigint") return `${value}n`;
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}
