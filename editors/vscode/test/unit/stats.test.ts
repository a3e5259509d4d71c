import * as assert from "node:assert/strict";
import { test } from "node:test";
import { CompletionStats, stateFromServerStats, statusText } from "../../src/stats";

test("stats count requests, suggestions and errors and keep the last latency", () => {
  const stats = new CompletionStats();
  stats.record(120, 1);
  stats.record(80, 0);
  stats.recordError();
  assert.equal(stats.requests, 3);
  assert.equal(stats.withSuggestion, 1);
  assert.equal(stats.errors, 1);
  assert.equal(stats.lastLatencyMs, 80);
  assert.match(stats.summary(), /requests 3, with a suggestion 1, errors 1; latency last 80 ms/);
});

test("percentiles are taken over recorded latencies", () => {
  const stats = new CompletionStats();
  assert.equal(stats.percentile(50), undefined);
  for (const ms of [50, 10, 40, 20, 30]) stats.record(ms, 1);
  assert.equal(stats.percentile(50), 30);
  assert.equal(stats.percentile(90), 50);
  assert.equal(stats.percentile(0), 10);
});

test("status text shows the state and, once ready, the last latency", () => {
  assert.match(statusText("starting", true), /loading/);
  assert.match(statusText("error", true), /error/);
  assert.equal(statusText("ready", true), "$(check) infill");
  assert.equal(statusText("ready", true, 123.4), "$(check) infill 123 ms");
  assert.match(statusText("ready", false, 123), /off/);
});

test("the server's model status maps to loading, ready or error with its message", () => {
  assert.deepEqual(stateFromServerStats({ model: { status: "loading" } }), { state: "loading" });
  assert.deepEqual(stateFromServerStats({ model: { status: "unloaded" } }), { state: "loading" });
  assert.deepEqual(stateFromServerStats({ model: { status: "ready" } }), { state: "ready" });
  assert.deepEqual(stateFromServerStats({ model: { status: "failed", error: "no config.json in /m" } }), {
    state: "error",
    error: "no config.json in /m",
  });
  assert.match(statusText("loading", true), /loading model/);
});
