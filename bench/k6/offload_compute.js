// k6 run bench/k6/offload_compute.js — load on /offload/compute; see lib.js for the environment variables.
import { buildOptions, hit, loadUrls, summarize } from "./lib.js";

loadUrls("/offload/compute");

export const options = buildOptions();

export default function () {
  hit();
}

export function handleSummary(data) {
  return summarize(data);
}
