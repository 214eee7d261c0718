/**
 * Reading the Kafka clients' errors: both adapters pass the library's errors through, and their texts differ
 * (kafkajs: "This server does not host this topic-partition"; @platformatic/kafka: "Unknown topic <name>.").
 * @module
 */

/** Whether `err` says the brokers do not know the topic (as opposed to, say, brokers that cannot be reached). */
export function isUnknownTopicError(err: unknown): boolean {
  return /does not host this topic|Unknown topic|UNKNOWN_TOPIC/i.test(err instanceof Error ? err.message : String(err));
}
