// k6 run bench/k6/offload.js — load on /offload; see lib.js for the environment variables.
import { buildOptions, hit, loadUrls, summarize } from "./lib.js";

loadUrls("/offload");

export const options = buildOptions();

export default function () {
  hit();
}

export function handleSummary(data) {
  return summarize(data);
}
