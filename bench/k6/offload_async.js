// k6 run bench/k6/offload_async.js — load on /offload_async; see lib.js for the environment variables.
import { buildOptions, hit, loadUrls, summarize } from "./lib.js";

loadUrls("/offload_async");

export const options = buildOptions();

export default function () {
  hit();
}

export function handleSummary(data) {
  return summarize(data);
}
