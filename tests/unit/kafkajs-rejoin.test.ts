/**
 * The hook before a kafkajs consumer joins its group again (connectors/kafka/kafkajs-rejoin.ts): the JoinGroup
 * call that carries a registered subscription buffer waits for its hook, runs it once, goes on when it fails,
 * and kafkajs' own Broker is wrapped once the adapter is loaded. The scale-out worker's use of it on the real
 * broker is tested in tests/integration/scaleout-workers.test.ts (a worker joining moves a task).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import brokerModule from "kafkajs/src/broker/index.js";
import { beforeJoinWith, installRejoinHook } from "../../connectors/kafka/kafkajs-rejoin.ts";

interface JoinRequest {
  readonly groupId: string;
  readonly memberId?: string;
  readonly groupProtocols: readonly { readonly name: string; readonly metadata: Buffer }[];
}

/** A stand-in for kafkajs' Broker: its joinGroup records the request it would send. */
function fakeBroker(calls: string[]): { joinGroup(r: JoinRequest): Promise<string> } {
  class Broker {
    async joinGroup(r: JoinRequest): Promise<string> {
      calls.push(`JoinGroup ${r.groupId}`);
      return "joined";
    }
  }
  installRejoinHook(Broker);
  return new Broker();
}

describe("kafkajs: the hook before a rejoin", () => {
  it("a JoinGroup carrying a registered subscription is sent only after its hook settled, and the hook runs once", async () => {
    const calls: string[] = [];
    const broker = fakeBroker(calls);
    const metadata = Buffer.from("subscription");
    let release!: () => void;
    beforeJoinWith(metadata, () => {
      calls.push("hook");
      return new Promise<void>((r) => (release = r));
    });
    const request = { groupId: "g", groupProtocols: [{ name: "gress-tasks", metadata }] };
    const joined = broker.joinGroup(request);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(calls, ["hook"], "the request waits for the hook");
    release();
    assert.equal(await joined, "joined");
    assert.deepEqual(calls, ["hook", "JoinGroup g"]);
    // The same request again (kafkajs' MEMBER_ID_REQUIRED round trip reuses it): no second hook.
    await broker.joinGroup(request);
    assert.deepEqual(calls, ["hook", "JoinGroup g", "JoinGroup g"]);
  });

  it("a failing hook does not keep the member out of its group; a subscription without a hook joins at once", async () => {
    const calls: string[] = [];
    const broker = fakeBroker(calls);
    const failing = Buffer.from("a");
    beforeJoinWith(failing, () => {
      calls.push("failing hook");
      return Promise.reject(new Error("checkpoint refused"));
    });
    assert.equal(await broker.joinGroup({ groupId: "g1", groupProtocols: [{ name: "gress-tasks", metadata: failing }] }), "joined");
    assert.equal(await broker.joinGroup({ groupId: "g2", groupProtocols: [{ name: "gress-tasks", metadata: Buffer.from("a") }] }), "joined");
    assert.deepEqual(calls, ["failing hook", "JoinGroup g1", "JoinGroup g2"]);
  });

  it("the hook is given the request's member id, empty when kafkajs dropped it (UNKNOWN_MEMBER_ID)", async () => {
    const calls: string[] = [];
    const broker = fakeBroker(calls);
    const known = Buffer.from("known");
    const dropped = Buffer.from("dropped");
    beforeJoinWith(known, async (memberId) => void calls.push(`hook "${memberId}"`));
    beforeJoinWith(dropped, async (memberId) => void calls.push(`hook "${memberId}"`));
    await broker.joinGroup({ groupId: "g1", memberId: "m-1", groupProtocols: [{ name: "gress-tasks", metadata: known }] });
    await broker.joinGroup({ groupId: "g2", memberId: "", groupProtocols: [{ name: "gress-tasks", metadata: dropped }] });
    assert.deepEqual(calls, ['hook "m-1"', "JoinGroup g1", 'hook ""', "JoinGroup g2"]);
  });

  it("the kafkajs adapter wraps kafkajs' Broker.prototype.joinGroup once", async () => {
    await import("../../connectors/kafka/kafkajs.ts");
    const proto = (brokerModule as { prototype: Record<PropertyKey, unknown> }).prototype;
    assert.equal(proto[Symbol.for("gress.kafkajs.rejoinHook")], true);
    const wrapped = proto.joinGroup;
    installRejoinHook(brokerModule as { prototype: object });
    assert.equal(proto.joinGroup, wrapped, "installed twice would run each hook twice");
  });
});
