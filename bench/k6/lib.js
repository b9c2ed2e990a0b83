// Shared by the per-endpoint scripts: the same URLs, concurrency and duration as the runner's
// oha steps, and a summary in the shape bench/scripts/loadgen.py reads.
//
// Environment:
//   URLS_FILE     one URL a line (run_demo_bench.py writes these); without it the script makes
//                 256 URLs of its own endpoint from a seeded generator: BASE_URL (default
//                 http://127.0.0.1:8000, :8001 for /offload_async), ROWS (list_items work size,
//                 default 2000) or N (compute size, default 20000)
//   VUS, DURATION ("10s"), RATE (optional: open loop, k6's constant-arrival-rate executor: RATE
//   requests/s whatever the server does, a request that finds no free VU is dropped and counted
//   in dropped_iterations), TIMEOUT (optional, per request), SUMMARY_PATH (handleSummary's JSON)
import http from "k6/http";
import { Counter } from "k6/metrics";
import { SharedArray } from "k6/data";

const WORDS = ["alpha", "canyon", "ember", "harbor", "meadow", "orbit", "river", "summit"];
const ASYNC_ENDPOINTS = ["/offload_async"];

// A small seeded generator (splitmix32-style) so every run of a script sends the same URLs.
function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

function generatedUrls(endpoint) {
  const port = ASYNC_ENDPOINTS.includes(endpoint) ? 8001 : 8000;
  const base = __ENV.BASE_URL || `http://127.0.0.1:${port}`;
  const random = seededRandom(20240101);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const urls = [];
  for (let i = 0; i < 256; i += 1) {
    let query;
    if (endpoint.endsWith("/compute")) {
      query = `n=${__ENV.N || 20000}&seed=${Math.floor(random() * 2 ** 32)}&buckets=${pick([10, 16, 50, 100])}`;
    } else {
      query = `user_id=${1 + Math.floor(random() * 100000)}&rows=${__ENV.ROWS || 2000}` +
        `&status=${pick(["all", "all", "open", "closed"])}&limit=${pick([10, 20, 50, 50, 100])}`;
      if (random() < 0.3) {
        query += `&q=${pick(WORDS).slice(0, 3)}`;
      }
    }
    urls.push(`${base}${endpoint}?${query}`);
  }
  return urls;
}

let urls = null;

export function loadUrls(endpoint) {
  urls = new SharedArray(`urls ${endpoint}`, () =>
    __ENV.URLS_FILE
      ? open(__ENV.URLS_FILE).split("\n").filter((line) => line.trim() !== "")
      : generatedUrls(endpoint),
  );
}

// Every non-2xx answer is an error for the benchmark; these name the ones the demo can give.
const KNOWN_STATUSES = [400, 404, 429, 500, 502, 503, 504];
const statusCounters = Object.fromEntries(
  KNOWN_STATUSES.map((code) => [code, new Counter(`status_${code}`)]),
);
const otherStatus = new Counter("status_other");
const transportErrors = new Counter("status_transport_error");

export function buildOptions() {
  const vus = parseInt(__ENV.VUS || "8", 10);
  const duration = __ENV.DURATION || "10s";
  const summaryTrendStats = ["min", "max", "avg", "p(10)", "p(25)", "p(50)", "p(75)", "p(90)",
    "p(95)", "p(99)", "p(99.9)", "p(99.99)"];
  if (__ENV.RATE) {
    return {
      summaryTrendStats,
      discardResponseBodies: true,
      scenarios: {
        fixed_rate: {
          executor: "constant-arrival-rate",
          rate: parseFloat(__ENV.RATE),
          timeUnit: "1s",
          duration,
          preAllocatedVUs: vus,
          maxVUs: vus,
        },
      },
    };
  }
  return { summaryTrendStats, discardResponseBodies: true, vus, duration };
}

export function hit() {
  const url = urls[Math.floor(Math.random() * urls.length)];
  const params = __ENV.TIMEOUT ? { timeout: __ENV.TIMEOUT } : {};
  const response = http.get(url, params);
  if (response.status === 0) {
    transportErrors.add(1);
  } else if (response.status < 200 || response.status >= 300) {
    const counter = statusCounters[response.status];
    if (counter) {
      counter.add(1);
    } else {
      otherStatus.add(1);
    }
  }
}

export function summarize(data) {
  const statusCounts = {};
  for (const [name, metric] of Object.entries(data.metrics)) {
    if (name.startsWith("status_") && metric.values.count > 0) {
      statusCounts[name.slice("status_".length)] = metric.values.count;
    }
  }
  if (__ENV.SUMMARY_PATH) {
    return { [__ENV.SUMMARY_PATH]: JSON.stringify({ ...data, status_counts: statusCounts }) };
  }
  const latency = data.metrics.http_req_duration.values;
  const ms = (value) => (value === undefined ? "-" : value.toFixed(2));
  const line =
    `${data.metrics.http_reqs.values.rate.toFixed(1)} req/s, p50 ${ms(latency["p(50)"])} ms, ` +
    `p99 ${ms(latency["p(99)"])} ms, p99.9 ${ms(latency["p(99.9)"])} ms, ` +
    `non-2xx ${JSON.stringify(statusCounts)}\n`;
  return { stdout: line };
}
