// k6 run bench/k6/baseline.js — load on /baseline; see lib.js for the environment variables.
import { buildOptions, hit, loadUrls, summarize } from "./lib.js";

loadUrls("/baseline");

export const options = buildOptions();

export default function () {
  hit();
}

export function handleSummary(data) {
  return summarize(data);
}
