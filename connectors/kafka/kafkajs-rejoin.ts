/**
 * A hook before a kafkajs 2.2.4 consumer joins its group again (connectors/kafka/kafkajs.ts installs it), for
 * `GroupAssignor.beforeRejoin` (./client.ts). kafkajs has no such callback: whatever makes it rejoin (its runner's
 * heartbeat between batches, a fetch refused, a heartbeat of ours inside a batch handler), it goes through
 * ConsumerGroup's join, which calls the assigner's `protocol()` for the subscription metadata and passes that
 * metadata, as is, in the JoinGroup request to the coordinator's `Broker.joinGroup`. So the assigner registers
 * a hook for the metadata buffer it returns ({@link beforeJoinWith}), and the wrapped `Broker.prototype.joinGroup`
 * awaits the hook of a buffer it finds in the request before sending it. A hook runs once; a join that kafkajs
 * tries again asks `protocol()` again, and thus registers (and runs) it again. The hook is given the request's
 * member id: empty when kafkajs dropped its own (UNKNOWN_MEMBER_ID: the group no longer knows this member).
 * @module
 */
type JoinGroup = (this: unknown, request: { readonly memberId?: string; readonly groupProtocols?: readonly { readonly metadata?: unknown }[] }) => Promise<unknown>;

const hooks = new WeakMap<object, (memberId: string) => Promise<void>>();
const INSTALLED = Symbol.for("gress.kafkajs.rejoinHook");

/** Runs `hook` with the request's member id (and waits for it, a rejection ignored) before the JoinGroup request that carries `metadata`. */
export function beforeJoinWith(metadata: Uint8Array, hook: (memberId: string) => Promise<void>): void {
  hooks.set(metadata, hook);
}

/** Wraps kafkajs' `Broker.prototype.joinGroup` (once per process) so that it runs the hooks of {@link beforeJoinWith}. */
export function installRejoinHook(brokerModule: { prototype: object }): void {
  const proto = brokerModule.prototype as { joinGroup?: JoinGroup; [INSTALLED]?: true };
  if (proto[INSTALLED] === true) return;
  const original = proto.joinGroup;
  if (typeof original !== "function") throw new Error("kafkajs: Broker.prototype.joinGroup not found (Gress needs kafkajs 2.2.4)");
  proto.joinGroup = async function (this: unknown, request) {
    for (const p of request.groupProtocols ?? []) {
      const m = p.metadata;
      const hook = typeof m === "object" && m !== null ? hooks.get(m) : undefined;
      if (hook === undefined) continue;
      hooks.delete(m as object);
      await hook(request.memberId ?? "").catch(() => undefined);
    }
    return original.call(this, request);
  };
  proto[INSTALLED] = true;
}
