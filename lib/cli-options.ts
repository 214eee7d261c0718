/**
 * Option values that more than one `gress` command takes, parsed the same way everywhere: a port, and a list of
 * Kafka brokers. Each is a zod schema, for the command's `validate(...)`, so that an error names the option.
 * @module
 */
import { z } from "zod";

/** A TCP port, 0 (any free port) to 65535. */
export const portSchema: z.ZodType<number, unknown> = z.coerce.number().int().min(0).max(65535);

/** `--brokers HOST:PORT,HOST:PORT...`: the comma-separated list, trimmed, without empty entries; at least one. */
export const brokersSchema: z.ZodType<string[], unknown> = z
  .string({ error: (issue) => (issue.input === undefined ? "required: --brokers HOST:PORT[,HOST:PORT...]" : undefined) })
  .min(1)
  .transform((s) => s.split(",").map((b) => b.trim()).filter((b) => b !== ""))
  .pipe(z.array(z.string()).min(1));
