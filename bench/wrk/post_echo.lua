-- POST a 76-byte JSON body to the URL's path; print one machine-readable summary line.
-- Latencies are in microseconds (wrk's unit).
wrk.method = "POST"
wrk.body = '{"user":"ada","items":[{"sku":"tea","qty":2},{"sku":"mug","qty":1}],"id":17}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p75":%.0f,"p90":%.0f,"p99":%.0f,' ..
    '"p999":%.0f,"max":%.0f,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
