# Shared by the benchmark scripts (sourced): timing with peak RSS, cache dropping, ratios.
measure() {  # prints "seconds peak_rss_kib"
  /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1
}
drop_cache() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.2f\", $1/$2; else print \"n/a\" }"; }
