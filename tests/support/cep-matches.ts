/**
 * Runs a pattern over named events and gives each match as the events' names in input order, for tests that
 * read like FlinkCEP's ("c a2 d").
 * @module
 */
import { match, type Pattern, type PatternResult } from "../../cep/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

/**
 * Runs `p` over the events named `input` (made by `event`, timestamps 1, 2, ...) and returns each match as
 * "name1 name2 ..." in input order.
 */
export function matchNames<Ev>(p: Pattern<Ev, string, string>, input: readonly string[], event: (name: string) => Ev, nameOf: (e: Ev) => string): string[] {
  const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p));
  for (const [i, name] of input.entries()) d.pipeInput(event(name), i + 1);
  d.endInput();
  return d
    .readOutput()
    .filter((r) => r.kind === "match")
    .map((r) =>
      Object.values(r.events)
        .flat()
        .sort((a, b) => input.indexOf(nameOf(a)) - input.indexOf(nameOf(b)))
        .map(nameOf)
        .join(" "),
    );
}
