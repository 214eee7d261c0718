/**
 * gress/testing: what users need to test their pipelines — a {@link TestDriver} on virtual time and
 * fast-check arbitraries for out-of-order event streams.
 * @module
 */
export { VirtualClock } from "../clock.ts";
export * from "./arbitraries.ts";
export { MultiInputTestDriver, TestDriver, type TestDriverOptions } from "./test-driver.ts";
