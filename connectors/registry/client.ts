/**
 * A client of the Confluent Schema Registry REST API (Confluent's registry, Apicurio's `/apis/ccompat/v7`,
 * Karapace, Redpanda), on the web-standard `fetch`, so it runs on Node, Bun and Deno alike.
 *
 * Contract: schemas by id are immutable, so each id is fetched once and cached for the life of the client
 * (concurrent lookups of one id share one request); `lookups` counts the requests made. A missing id is a
 * {@link SchemaRegistryError} with `status` 404; network failures and 5xx answers are retried `retries` times
 * with a doubling delay, then thrown. Registration and compatibility checks are never cached.
 * @module
 */

/**
 * The formats a Confluent registry knows; a registry omits `schemaType` for Avro.
 *
 * @example
 * ```ts
 * import { registryDecoder, type SchemaType, schemaRegistry } from "gress/registry";
 *
 * const binary: SchemaType[] = ["AVRO", "PROTOBUF"];
 * const decode = registryDecoder({ registry: schemaRegistry({ url: "http://127.0.0.1:8081" }), schemaTypes: binary });
 * ```
 */
export type SchemaType = "AVRO" | "PROTOBUF" | "JSON";

/**
 * A schema as the registry stores it.
 *
 * @example
 * ```ts
 * import type { RegistrySchema } from "gress/registry";
 *
 * const user: RegistrySchema = { schemaType: "AVRO", schema: JSON.stringify({ type: "record", name: "User", fields: [{ name: "id", type: "long" }] }) };
 * ```
 */
export interface RegistrySchema {
  readonly schemaType: SchemaType;
  /** The schema text: Avro JSON, a .proto file, or a JSON Schema document. */
  readonly schema: string;
  readonly references?: readonly { readonly name: string; readonly subject: string; readonly version: number }[];
}

/**
 * What the registry says about a candidate schema under a subject's compatibility rule.
 *
 * @example
 * ```ts
 * import { schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * const verdict = await registry.checkCompatibility("users-value", { schemaType: "AVRO", schema: '"string"' });
 * if (!verdict.compatible) console.error(verdict.level, verdict.messages.join("; "));
 * ```
 */
export interface CompatibilityVerdict {
  readonly compatible: boolean;
  /** The subject's rule (BACKWARD, FORWARD, FULL, NONE, and their _TRANSITIVE forms), when the registry says. */
  readonly level: string | undefined;
  readonly messages: readonly string[];
}

/**
 * Options of {@link schemaRegistry}.
 *
 * @example
 * ```ts
 * import type { SchemaRegistryOptions } from "gress/registry";
 *
 * const options: SchemaRegistryOptions = { url: "http://127.0.0.1:8081", headers: { authorization: "Bearer t0ken" }, retries: 3 };
 * ```
 */
export interface SchemaRegistryOptions {
  /** Base URL of the Confluent API, e.g. `http://host:8081` or Apicurio's `http://host:8080/apis/ccompat/v7`. */
  readonly url: string;
  /** Extra request headers (authentication). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Retries of a request that failed on the network or with a 5xx. Default 2. */
  readonly retries?: number;
  /** Per-request timeout in milliseconds. Default 10 000. */
  readonly timeoutMs?: number;
  /** The fetch to use. Default: the global one. */
  readonly fetch?: typeof fetch;
}

/**
 * A failed registry request: the HTTP status (0 on a network failure) and the registry's own error code.
 *
 * @example
 * ```ts
 * import { SchemaRegistryError, schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * try {
 *   await registry.schemaById(424242);
 * } catch (err) {
 *   if (err instanceof SchemaRegistryError && err.status === 404) console.error("no such schema id");
 * }
 * ```
 */
export class SchemaRegistryError extends Error {
  readonly status: number;
  readonly errorCode: number | undefined;
  constructor(message: string, status: number, errorCode?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "SchemaRegistryError";
    this.status = status;
    this.errorCode = errorCode;
  }
}

/**
 * A registry client; see the module comment for caching and errors.
 *
 * @example
 * ```ts
 * import { schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * const id = await registry.register("users-value", { schemaType: "JSON", schema: '{"type":"object"}' });
 * console.log(await registry.schemaById(id), registry.lookups);
 * ```
 */
export interface SchemaRegistryClient {
  readonly url: string;
  /** Lookups of schemas by id sent to the registry so far (cache misses). */
  readonly lookups: number;
  /** The schema with this id (cached). */
  schemaById(id: number): Promise<RegistrySchema>;
  /** Registers the schema under the subject (the registry enforces the subject's rule) and returns its id. */
  register(subject: string, schema: RegistrySchema): Promise<number>;
  /** Checks the schema against the subject's latest version; a subject without versions accepts anything. */
  checkCompatibility(subject: string, schema: RegistrySchema): Promise<CompatibilityVerdict>;
  /** Sets the subject's compatibility rule (BACKWARD, FORWARD, FULL, NONE, or a _TRANSITIVE form). */
  setCompatibility(subject: string, level: string): Promise<void>;
  /** The latest version registered under the subject. */
  latest(subject: string): Promise<RegistrySchema & { readonly id: number; readonly version: number }>;
}

const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

/**
 * Creates a registry client.
 *
 * @example
 * ```ts
 * import { schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: process.env.GRESS_SCHEMA_REGISTRY_URL ?? "http://127.0.0.1:8081" });
 * const latest = await registry.latest("orders-value");
 * console.log(latest.id, latest.version, latest.schemaType);
 * ```
 * @param options URL, headers, retries, timeout
 * @returns a client that caches schemas by id
 */
export function schemaRegistry(options: SchemaRegistryOptions): SchemaRegistryClient {
  const base = options.url.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base)) throw new RangeError(`schemaRegistry: url must be http(s)://..., got ${JSON.stringify(options.url)}`);
  const retries = options.retries ?? 2;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const doFetch = options.fetch ?? fetch;
  const byId = new Map<number, Promise<RegistrySchema>>();
  let lookups = 0;

  const request = async (method: "GET" | "POST" | "PUT", path: string, body?: unknown): Promise<unknown> => {
    let lastError: unknown;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
      let response: Response;
      try {
        response = await doFetch(`${base}${path}`, {
          method,
          headers: { accept: CONTENT_TYPE, ...(body === undefined ? {} : { "content-type": CONTENT_TYPE }), ...options.headers },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        lastError = new SchemaRegistryError(`schema registry ${base}: ${method} ${path} failed: ${err instanceof Error ? err.message : String(err)}`, 0, undefined, { cause: err });
        continue;
      }
      const text = await response.text();
      let json: unknown;
      try {
        json = text === "" ? undefined : JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (response.ok) return json;
      const info = (json ?? {}) as { message?: unknown; error_code?: unknown };
      const message = typeof info.message === "string" ? info.message : text.slice(0, 200);
      const error = new SchemaRegistryError(`schema registry ${base}: ${method} ${path}: ${response.status} ${message}`, response.status, typeof info.error_code === "number" ? info.error_code : undefined);
      if (response.status < 500) throw error;
      lastError = error;
    }
    throw lastError;
  };

  const toSchema = (json: unknown): RegistrySchema => {
    const j = json as { schema?: unknown; schemaType?: unknown; references?: RegistrySchema["references"] };
    if (typeof j?.schema !== "string") throw new SchemaRegistryError(`schema registry ${base}: answer without a schema`, 200);
    const schemaType = (typeof j.schemaType === "string" ? j.schemaType : "AVRO") as SchemaType;
    return { schemaType, schema: j.schema, ...(j.references !== undefined && j.references.length > 0 ? { references: j.references } : {}) };
  };
  const body = (schema: RegistrySchema): Record<string, unknown> => ({
    schema: schema.schema,
    schemaType: schema.schemaType,
    ...(schema.references === undefined ? {} : { references: schema.references }),
  });
  const subjectPath = (subject: string): string => `/subjects/${encodeURIComponent(subject)}`;

  return {
    url: base,
    get lookups() {
      return lookups;
    },
    schemaById(id) {
      let cached = byId.get(id);
      if (cached === undefined) {
        lookups++;
        cached = request("GET", `/schemas/ids/${id}`).then(toSchema);
        byId.set(id, cached);
        // A failure is not cached: the id may be registered later, or the registry may come back.
        cached.catch(() => byId.delete(id));
      }
      return cached;
    },
    async register(subject, schema) {
      const json = (await request("POST", `${subjectPath(subject)}/versions`, body(schema))) as { id?: unknown };
      if (typeof json?.id !== "number") throw new SchemaRegistryError(`schema registry ${base}: registering under ${subject} gave no id`, 200);
      return json.id;
    },
    async checkCompatibility(subject, schema) {
      let level: string | undefined;
      try {
        const config = (await request("GET", `/config/${encodeURIComponent(subject)}?defaultToGlobal=true`)) as { compatibilityLevel?: unknown; compatibility?: unknown };
        const l = config?.compatibilityLevel ?? config?.compatibility;
        level = typeof l === "string" ? l : undefined;
      } catch (err) {
        if (!(err instanceof SchemaRegistryError) || err.status !== 404) throw err;
      }
      try {
        const json = (await request("POST", `/compatibility${subjectPath(subject)}/versions/latest?verbose=true`, body(schema))) as { is_compatible?: unknown; messages?: unknown };
        const messages = Array.isArray(json?.messages) ? json.messages.map(String) : [];
        return { compatible: json?.is_compatible === true, level, messages };
      } catch (err) {
        // No version under the subject yet: anything is compatible.
        if (err instanceof SchemaRegistryError && err.status === 404) return { compatible: true, level, messages: [] };
        throw err;
      }
    },
    async setCompatibility(subject, level) {
      await request("PUT", `/config/${encodeURIComponent(subject)}`, { compatibility: level });
    },
    async latest(subject) {
      const json = (await request("GET", `${subjectPath(subject)}/versions/latest`)) as { id?: unknown; version?: unknown };
      const schema = toSchema(json);
      if (typeof json.id !== "number" || typeof json.version !== "number") throw new SchemaRegistryError(`schema registry ${base}: latest of ${subject} without id or version`, 200);
      byId.set(json.id, Promise.resolve(schema));
      return { ...schema, id: json.id, version: json.version };
    },
  };
}
