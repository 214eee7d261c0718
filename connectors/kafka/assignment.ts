/**
 * Helpers shared by the Kafka client adapters (not part of the public API).
 * @module
 */
import type { TopicPartition } from "./client.ts";

/** The partitions added and revoked between two assignments of a member. */
export function assignmentChange(before: readonly TopicPartition[], after: readonly TopicPartition[]): { added: TopicPartition[]; revoked: TopicPartition[] } {
  const k = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;
  const had = new Set(before.map(k));
  const has = new Set(after.map(k));
  return { added: after.filter((tp) => !had.has(k(tp))), revoked: before.filter((tp) => !has.has(k(tp))) };
}
