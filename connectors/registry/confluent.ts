/**
 * {@link SchemaRegistryClient} backed by Confluent's official JavaScript client, `@confluentinc/schemaregistry`,
 * an optional peer dependency of Gress. The default client stays {@link schemaRegistry} (web-standard `fetch`,
 * no dependencies); choose this one to share the library Confluent maintains (its REST handling, retries,
 * OAuth/basic authentication) with the rest of a Confluent-based stack.
 *
 * Contract, the same as {@link schemaRegistry}'s: a schema id is fetched once and cached for the life of the
 * client (concurrent lookups of one id share one request; `lookups` counts the requests); a failed lookup is not
 * cached. Every failure is a {@link SchemaRegistryError}: the registry's HTTP status and error code, or status 0
 * when no answer came (network). The library is imported on the first asynchronous call; when it is not
 * installed that call rejects with a {@link ConfigError} that says what to install.
 *
 * Differences a user may see: the library answers compatibility checks with a yes/no only, so an incompatible
 * verdict carries no registry messages (the subject's rule is still named), and it remembers the id of a schema
 * it registered under a subject, so registering the same schema twice asks the registry once.
 * @module
 */
import type { SchemaRegistryClient as ConfluentClient, SchemaInfo } from "@confluentinc/schemaregistry";
import { optionalPeer } from "../../lib/optional-peer.ts";
import { type RegistrySchema, type SchemaRegistryClient, SchemaRegistryError, type SchemaRegistryOptions, type SchemaType } from "./client.ts";

const LIBRARY = "@confluentinc/schemaregistry";
/** The version of the library this adapter is tested with: package.json's devDependencies (check-exports.mjs). */
const LIBRARY_VERSION = "1.10.1";
type Library = typeof import("@confluentinc/schemaregistry");
/** Imports the library once per process (lib/optional-peer.ts: a missing package is a ConfigError with the fix). */
const load: () => Promise<Library> = optionalPeer({
  library: LIBRARY,
  version: LIBRARY_VERSION,
  api: "confluentSchemaRegistry",
  load: () => import("@confluentinc/schemaregistry"),
});

/**
 * Options of {@link confluentSchemaRegistry}: those of {@link schemaRegistry} except `fetch` (the library
 * sends its requests with axios), plus basic authentication in the library's own form.
 *
 * @example
 * ```ts
 * import type { ConfluentSchemaRegistryOptions } from "gress/registry";
 *
 * const options: ConfluentSchemaRegistryOptions = { url: "https://registry.example:8081", basicAuth: { username: "key", password: "secret" }, retries: 3 };
 * ```
 */
export interface ConfluentSchemaRegistryOptions extends Omit<SchemaRegistryOptions, "fetch"> {
  /** HTTP basic authentication (Confluent Cloud API key and secret). */
  readonly basicAuth?: { readonly username: string; readonly password: string };
}

/**
 * Creates a registry client on `@confluentinc/schemaregistry` (install it next to gress); it implements the
 * same interface as {@link schemaRegistry}, so {@link registryDecoder} and {@link registrySerializer} take
 * either.
 *
 * @example
 * ```ts
 * import { confluentSchemaRegistry, registryDecoder } from "gress/registry";
 *
 * const registry = confluentSchemaRegistry({ url: process.env.GRESS_SCHEMA_REGISTRY_URL ?? "http://127.0.0.1:8081" });
 * const decode = registryDecoder({ registry });
 * console.log(await registry.latest("orders-value"), typeof decode);
 * ```
 * @param options URL, headers, authentication, retries, timeout
 * @returns a client that caches schemas by id
 */
export function confluentSchemaRegistry(options: ConfluentSchemaRegistryOptions): SchemaRegistryClient {
  const base = options.url.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base)) throw new RangeError(`confluentSchemaRegistry: url must be http(s)://..., got ${JSON.stringify(options.url)}`);
  const byId = new Map<number, Promise<RegistrySchema>>();
  let lookups = 0;
  let client: Promise<ConfluentClient> | undefined;

  const connect = (): Promise<ConfluentClient> => {
    client ??= load().then(
      (lib) =>
        new lib.SchemaRegistryClient({
          baseURLs: [base],
          maxRetries: options.retries ?? 2,
          retriesWaitMs: 100,
          createAxiosDefaults: { timeout: options.timeoutMs ?? 10_000, ...(options.headers === undefined ? {} : { headers: { ...options.headers } }) },
          ...(options.basicAuth === undefined ? {} : { basicAuthCredentials: { credentialsSource: "USER_INFO" as const, userInfo: `${options.basicAuth.username}:${options.basicAuth.password}` } }),
        }),
      (e) => {
        client = undefined;
        throw e;
      },
    );
    return client;
  };
  /** Runs one library call; its RestError (or a network failure) becomes a SchemaRegistryError. */
  const call = async <T>(what: string, run: (c: ConfluentClient) => Promise<T>): Promise<T> => {
    const c = await connect();
    const lib = await load();
    try {
      return await run(c);
    } catch (err) {
      // The library's RestError is an answer of the registry; anything else (axios' network errors) is not.
      const rest = err instanceof lib.RestError;
      const status = rest ? err.status : 0;
      const errorCode = rest && typeof err.errorCode === "number" ? err.errorCode : undefined;
      const message = err instanceof Error ? err.message : String(err);
      throw new SchemaRegistryError(`schema registry ${base}: ${what}: ${rest ? `${status} ` : "failed: "}${message}`, status, errorCode, { cause: err });
    }
  };
  const toSchema = (info: SchemaInfo): RegistrySchema => {
    if (typeof info?.schema !== "string") throw new SchemaRegistryError(`schema registry ${base}: answer without a schema`, 200);
    const schemaType = (info.schemaType ?? "AVRO") as SchemaType;
    const references = info.references ?? [];
    return { schemaType, schema: info.schema, ...(references.length > 0 ? { references } : {}) };
  };
  const toInfo = (schema: RegistrySchema): SchemaInfo => ({
    schema: schema.schema,
    schemaType: schema.schemaType,
    ...(schema.references === undefined ? {} : { references: schema.references.map((r) => ({ ...r })) }),
  });
  const notFound = (err: unknown): boolean => err instanceof SchemaRegistryError && err.status === 404;

  return {
    url: base,
    get lookups() {
      return lookups;
    },
    schemaById(id) {
      let cached = byId.get(id);
      if (cached === undefined) {
        lookups++;
        cached = call(`GET schema id ${id}`, (c) => c.getBySubjectAndId("", id)).then(toSchema);
        byId.set(id, cached);
        // A failure is not cached: the id may be registered later, or the registry may come back.
        cached.catch(() => byId.delete(id));
      }
      return cached;
    },
    register(subject, schema) {
      return call(`register under ${subject}`, (c) => c.register(subject, toInfo(schema)));
    },
    async checkCompatibility(subject, schema) {
      let level: string | undefined;
      try {
        level = await call(`compatibility rule of ${subject}`, (c) => c.getCompatibility(subject));
      } catch (err) {
        if (!notFound(err)) throw err;
        level = await call("global compatibility rule", (c) => c.getDefaultCompatibility());
      }
      let version: number;
      try {
        version = await call(`latest version of ${subject}`, async (c) => {
          // The library keeps "latest" cached; a compatibility check must see the registry's current one.
          c.clearLatestCaches();
          return (await c.getLatestSchemaMetadata(subject)).version ?? Number.NaN;
        });
      } catch (err) {
        // No version under the subject yet: anything is compatible.
        if (notFound(err)) return { compatible: true, level, messages: [] };
        throw err;
      }
      const compatible = await call(`compatibility check under ${subject}`, (c) => c.testCompatibility(subject, version, toInfo(schema)));
      return { compatible: compatible === true, level: typeof level === "string" ? level : undefined, messages: [] };
    },
    async setCompatibility(subject, level) {
      await call(`set the compatibility rule of ${subject}`, (c) => c.updateCompatibility(subject, level as never));
    },
    async latest(subject) {
      const meta = await call(`latest version of ${subject}`, (c) => {
        c.clearLatestCaches();
        return c.getLatestSchemaMetadata(subject);
      });
      const schema = toSchema(meta as SchemaInfo);
      if (typeof meta.id !== "number" || typeof meta.version !== "number") throw new SchemaRegistryError(`schema registry ${base}: latest of ${subject} without id or version`, 200);
      byId.set(meta.id, Promise.resolve(schema));
      return { ...schema, id: meta.id, version: meta.version };
    },
  };
}
