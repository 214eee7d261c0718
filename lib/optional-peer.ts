/**
 * Loading an optional peer dependency (a library Gress supports but does not install: @platformatic/kafka,
 * @confluentinc/schemaregistry). The library is imported on first use, once per process; a failed import is
 * not kept, so the next call tries again. When the package itself is missing (not a dependency of its own), the
 * call rejects with a {@link ConfigError} that names the API that needs it and the install command.
 * @module
 */
import { ConfigError } from "./errors.ts";

/** What {@link optionalPeer} needs to know about the library. */
export interface OptionalPeer<L> {
  /** The package name, e.g. "@platformatic/kafka". */
  readonly library: string;
  /** The version Gress is tested with (package.json's devDependencies pin; check-exports.mjs compares them). */
  readonly version: string;
  /** The Gress API that needs it, for the error ("platformaticKafkaClient"). */
  readonly api: string;
  /** Imports it: `() => import("<package>")`, written out so that bundlers and Deno's import map see it. */
  readonly load: () => Promise<L>;
}

/** A loader for an optional peer dependency (see the module comment). */
export function optionalPeer<L>(peer: OptionalPeer<L>): () => Promise<L> {
  // How each runtime names the package it could not find: 'x' (Node, Bun), 'npm:x@version' or "x" (Deno).
  const escaped = peer.library.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const notFound = new RegExp(`['"](?:npm:)?${escaped}(?:@[^'"]*)?['"]`);
  let loading: Promise<L> | undefined;
  return () =>
    (loading ??= peer.load().catch((e: unknown) => {
      loading = undefined;
      const code = (e as { code?: unknown } | null)?.code;
      const message = e instanceof Error ? e.message : String(e);
      // Only the package itself missing; a broken installation of it (a dependency of its own missing) says so.
      if (code !== "ERR_MODULE_NOT_FOUND" || !notFound.test(message)) throw e;
      const hint = `npm install ${peer.library}@${peer.version}`;
      throw new ConfigError(
        `${peer.api} needs the package ${peer.library}, an optional peer dependency of gress that is not installed: ${hint}`,
        [{ path: [peer.api], code: "missing_dependency", message: `${peer.library} is not installed (${hint})` }],
        { cause: e },
      );
    }));
}
