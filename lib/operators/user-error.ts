/**
 * What happens when a user function throws on a record: by default the record goes to the dead-letter side
 * output with the operator and the error message as the reason, and is counted; with `onUserError: "fail"`
 * the job fails with a UserFunctionError that names the operator and carries the original error as cause.
 * @module
 */
import type { Downstream } from "../operate.ts";
import { DEAD_LETTERS, type Element, sideRecord, type StreamRecord } from "../element.ts";
import { UserFunctionError } from "../errors.ts";
import type { OperatorContext } from "../operator-context.ts";

/** Handles an exception thrown by user code while processing `rec`. */
export function handleUserError(
  ctx: OperatorContext,
  downstream: Downstream<Element<never>>,
  rec: StreamRecord<unknown>,
  error: unknown,
): void {
  const message = error instanceof Error ? error.message : String(error);
  if (ctx.onUserError === "fail") {
    throw new UserFunctionError(`user function of operator "${ctx.id}" threw: ${message}`, {
      cause: error,
      details: { operator: ctx.id },
    });
  }
  ctx.metrics.deadLetters++;
  downstream.next(sideRecord(DEAD_LETTERS.id, rec.value, rec.timestamp, `${ctx.id}: ${message}`));
}
