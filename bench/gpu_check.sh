#!/usr/bin/env bash
# The one prepared GPU check of the CUDA backend (issue 12; docs/cuda.md, "Running the GPU check").
#
#   bench/gpu_check.sh prepare
#       Here, on a CPU machine with nvcc: builds build-cuda/ (CUDA on, warnings as errors; G4_JOBS, default 1) and
#       packs into .gpu/bundle.tar.xz the stripped g4convert and g4_tests with the shared libraries they need that a
#       bare GPU machine lacks (it has no Debian -dev packages and cannot install any), beside .gpu/MANIFEST.
#       Prints the `carry` to name. (Unpacked it is ~100 MiB; the carry and the tree travel within 64 MiB.)
#   bench/gpu_check.sh run [--device cpu]
#       There, in the repo root, with `carry: [".gpu"]`: nvidia-smi and `g4convert version`; the GPU tests
#       (g4_tests 'Cuda*:*CudaForward*': op parity, goldens on --device cuda, determinism, whole-model verify on every
#       tiny preset; a skip means no GPU was seen and is an error); roundtrip --forward --device cuda on the CLI;
#       bench/gpu_parity.py (parity with transformers on the same GPU and with our CPU backend, fp32 and bf16, on the
#       tiny presets and synth'd realistic sizes; timing; full-size presets extrapolated from --layers 4 and 8).
#       Results: $OUT (or ./gpu-check-results): gpu-check.md (the report), gpu-check.log (everything printed),
#       gtest.log, gpu-parity.json. Every step has a timeout inside G4_GPU_CHECK_BUDGET (default 450 s), so the
#       whole run ends under 8 minutes. Exit: 0 all ran and passed, 1 something failed, 3 nothing failed but
#       something did not run.
#       --device cpu (or G4_GPU_CHECK_DEVICE=cpu): the same flow on the CPU backend with the project venv's python,
#       tiny presets only: a dry run that proves the script here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
carried="$root/.gpu"
bundle=""  # the unpacked bundle: build-cuda/gpu-bundle here while preparing, the work dir while running
mode=${1:-}
shift || true

# Sources the bundle is built from: run mode warns when the tree it runs in holds other ones.
fingerprint() {
  find src cuda tests CMakeLists.txt -type f \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name CMakeLists.txt \) -print0 |
    LC_ALL=C sort -z | xargs -0 cat | sha256sum | cut -c1-16
}

prepare() {
  local build="$root/build-cuda" jobs=${G4_JOBS:-1}
  cmake -S . -B "$build" -G Ninja -DG4_WERROR=ON | grep 'g4convert: CUDA'
  ninja -C "$build" -j "$jobs" g4convert g4_tests
  if "$build/g4convert" version | grep -q '^cuda: not compiled'; then
    echo "gpu_check prepare: build-cuda has no CUDA compiled in (no nvcc found when it was configured?)" >&2; exit 1
  fi

  bundle="$build/gpu-bundle"
  rm -rf "$bundle" "$carried"
  mkdir -p "$bundle/bin" "$bundle/lib/fallback" "$carried"
  strip -o "$bundle/bin/g4convert" "$build/g4convert"
  strip -o "$bundle/bin/g4_tests" "$build/g4_tests"
  # Libraries: glibc's own stay (the GPU machine's newer glibc serves binaries built against ours); the CUDA
  # libraries stay (cuBLAS Lt alone is ~500 MiB; the GPU machine has them, matched to its driver; libcuda is the
  # driver's). The C/C++ runtimes every system has go to lib/fallback, used there only where its own are missing
  # or too old; the rest (oneDNN, yaml-cpp, OpenCL's loader that Debian's oneDNN links, ...) go to lib/.
  local glibc='^(linux-vdso|libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64)\.so' cuda='^lib(cuda|cudart|cublas|cublasLt)\.so'
  local runtime='^(libstdc\+\+|libgcc_s|libgomp|libz)\.so'
  local name path
  while read -r name path; do
    [[ $name =~ $glibc || $name =~ $cuda ]] && continue
    if [[ $name =~ $runtime ]]; then cp -L "$path" "$bundle/lib/fallback/$name"; else cp -L "$path" "$bundle/lib/$name"; fi
  done < <(ldd "$build/g4convert" "$build/g4_tests" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u)
  if ldd "$build/g4convert" "$build/g4_tests" | grep -q 'not found'; then
    echo "gpu_check prepare: a library is missing here:" >&2; ldd "$build/g4_tests" | grep 'not found' >&2; exit 1
  fi
  local dirty=""
  [ -n "$(git status --porcelain -- src cuda tests CMakeLists.txt 2>/dev/null)" ] && dirty=" plus uncommitted changes"
  {
    echo "built: $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    echo "sources: $(fingerprint)"
    echo "cuda: $(nvcc --version | tail -1)"
  } > "$bundle/MANIFEST"
  (cd "$bundle" && find . -type f ! -name MANIFEST | sort | xargs sha256sum) >> "$bundle/MANIFEST"

  ( cd "$bundle" && find . -type f -printf '%s\t%p\n' | sort -rn | awk -F'\t' '{printf "  %6.1f MiB  %s\n", $1/1048576, $2}' )
  tar -C "$bundle" -cf - . | xz -6 -T"$jobs" > "$carried/bundle.tar.xz"
  cp "$bundle/MANIFEST" "$carried/MANIFEST"
  local bytes limit=$((50 << 20))
  bytes=$(du -sb "$carried" | cut -f1)
  printf 'gpu_check prepare: bundle %.1f MiB unpacked, %s: %.1f MiB\n' "$(du -sb "$bundle" | awk '{print $1/1048576}')" \
    "$carried" "$(awk "BEGIN{print $bytes/1048576}")"
  if [ "$bytes" -gt "$limit" ]; then
    echo "gpu_check prepare: the bundle is over 50 MiB; the working tree and the carry together must stay under 64 MiB" >&2
    exit 1
  fi
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  grep -qx '/gpu-check-results/' .git/info/exclude 2>/dev/null || echo '/gpu-check-results/' >> .git/info/exclude
  echo "gpu_check prepare: ready. On the GPU machine: run(command=\"bench/gpu_check.sh run\", carry=[\".gpu\"], timeout_s=540)"
}

# --- run

device=${G4_GPU_CHECK_DEVICE:-cuda}
budget=${G4_GPU_CHECK_BUDGET:-450}
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
cap() { local l; l=$(( $(left) - ${2:-10} )); [ "$l" -lt "$1" ] && echo $(( l > 1 ? l : 1 )) || echo "$1"; }  # cap SECONDS [RESERVE]
summary=()
failed=0 not_run=0
record() {  # status what detail
  summary+=("| $2 | $1 | $3 |")
  case $1 in FAIL) failed=1 ;; "not run") not_run=1 ;; esac
}

find_cuda_libs() {  # prints a directory holding libcublasLt.so.13 if the loader would not find one by itself
  ldconfig -p 2>/dev/null | grep -q 'libcublasLt\.so\.13 ' && return 0
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return 0; }
  done
  d=$(timeout 20 python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)
  [ -n "$d" ] && [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return 0; }
  d=$(timeout 30 find / -xdev -name libcublasLt.so.13 -print -quit 2>/dev/null || true)
  [ -n "$d" ] && dirname "$d"
  return 0
}

find_driver_lib() {  # prints the directory of the driver's libcuda.so.1 if the loader would not find it (never a stub)
  ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 ' && return 0
  local d
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcuda.so.1" ] && { echo "$d"; return 0; }
  done
  return 0
}

library_path() {  # LD_LIBRARY_PATH for our binaries: the bundle, the fallback runtimes only if needed, cuBLAS, the
  # driver, then whatever the machine already sets (the image may point at its driver that way)
  local rest cuda driver
  cuda=$(find_cuda_libs)
  driver=$(find_driver_lib)
  rest="${cuda:+:$cuda}${driver:+:$driver}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if LD_LIBRARY_PATH="$bundle/lib$rest" ldd "$bundle/bin/g4_tests" "$bundle/bin/g4convert" 2>&1 | grep -q 'not found'; then
    echo "$bundle/lib:$bundle/lib/fallback$rest"
  else
    echo "$bundle/lib$rest"
  fi
}

run_check() {
  while [ $# -gt 0 ]; do
    case $1 in
      --device) device=$2; shift 2 ;;
      *) echo "gpu_check run: unknown argument $1 (run [--device cpu|cuda])" >&2; exit 2 ;;
    esac
  done
  [ "$device" = cpu ] && budget=${G4_GPU_CHECK_BUDGET:-900}  # the dry run on 2 shared cores is slower
  local out=${OUT:-$root/gpu-check-results}
  mkdir -p "$out"
  local report="$out/gpu-check.md" work=${G4_GPU_CHECK_WORK:-/tmp/g4-gpu-check}
  exec > >(tee "$out/gpu-check.log") 2>&1
  rm -rf "$work" && mkdir -p "$work"
  # shellcheck disable=SC2064  # expanded now on purpose: $work is local to this function
  trap "rm -rf '$work'" EXIT

  echo "== gpu_check run --device $device ($(date -u +%FT%TZ), budget ${budget}s, results in $out)"
  [ -f "$carried/bundle.tar.xz" ] || { echo "gpu_check run: no .gpu/bundle.tar.xz (run bench/gpu_check.sh prepare on the CPU machine and carry .gpu)"; exit 1; }
  bundle="$work/bundle"
  mkdir -p "$bundle"
  tar -C "$bundle" -xJf "$carried/bundle.tar.xz" 2>/dev/null ||  # no xz there: python's tarfile reads it
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$carried/bundle.tar.xz" "$bundle"
  [ -x "$bundle/bin/g4convert" ] || { echo "gpu_check run: .gpu/bundle.tar.xz holds no bin/g4convert"; exit 1; }
  local g4="$bundle/bin/g4convert" tests="$bundle/bin/g4_tests" ld stale=""
  ld=$(library_path)
  echo "LD_LIBRARY_PATH for g4convert and g4_tests: $ld"
  LD_LIBRARY_PATH="$ld" ldd "$g4" | sed 's/^/  /'
  if LD_LIBRARY_PATH="$ld" ldd "$g4" "$tests" 2>&1 | grep 'not found'; then
    echo "gpu_check run: libraries missing (above): nothing can run"; exit 1
  fi
  grep -v '^[0-9a-f]\{64\}  ' "$bundle/MANIFEST"
  (cd "$bundle" && grep '^[0-9a-f]\{64\}  ' MANIFEST | sha256sum --quiet -c) || { echo "gpu_check run: the unpacked bundle fails its checksums"; exit 1; }
  [ "$(sed -n 's/^sources: //p' "$bundle/MANIFEST")" = "$(fingerprint)" ] ||
    stale="the bundle was built from other sources than this tree's src/ cuda/ tests/ CMakeLists.txt: rerun prepare"
  [ -n "$stale" ] && { echo "WARNING: $stale"; record FAIL "bundle matches the tree" "$stale"; }

  echo; echo "== device"
  local smi="(none)"
  if command -v nvidia-smi >/dev/null; then
    timeout 20 nvidia-smi || true
    smi=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
  else
    echo "nvidia-smi: not found"
  fi
  local version
  version=$(timeout 30 env LD_LIBRARY_PATH="$ld" "$g4" version 2>&1) || true
  echo "$version"
  if [ "$device" = cuda ]; then
    if grep -q '^devices: .*cuda' <<<"$version"; then record pass "g4convert version lists cuda" "$(grep '^cuda:' <<<"$version")"
    else record FAIL "g4convert version lists cuda" "$(tr '\n' ' ' <<<"$version")"; fi
  fi

  echo; echo "== GPU tests: g4_tests --gtest_filter='Cuda*:*CudaForward*'"
  local rc=0 t
  t=$(cap 240)
  G4_SOURCE_DIR="$root" G4_BINARY="$g4" LD_LIBRARY_PATH="$ld" timeout -k 5 "$t" "$tests" --gtest_filter='Cuda*:*CudaForward*' \
    > "$out/gtest.log" 2>&1 || rc=$?
  local ran passed skipped failures
  ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran.*/\1/p' "$out/gtest.log" | tail -1)
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out/gtest.log" | tail -1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\{0,1\}, listed below.*/\1/p' "$out/gtest.log" | tail -1)
  failures=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\{0,1\}, listed below.*/\1/p' "$out/gtest.log" | tail -1)
  grep -E '^\[  (FAILED|SKIPPED) \] [A-Za-z][^ ]*$' "$out/gtest.log" | sort -u | head -40 || true
  local detail="${ran:-0} ran, ${passed:-0} passed, ${skipped:-0} skipped, ${failures:-0} failed (rc $rc)"
  echo "$detail"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then record FAIL "GPU tests" "past ${t}s: $detail"
  elif [ "$rc" != 0 ] || [ -z "$ran" ] || [ "$ran" = 0 ]; then record FAIL "GPU tests" "$detail"
  elif [ "${skipped:-0}" != 0 ] && [ "$device" = cuda ]; then record FAIL "GPU tests" "$detail: a skip means the tests saw no GPU"
  elif [ "${skipped:-0}" != 0 ]; then record pass "GPU tests" "$detail (skips expected: a dry run without a GPU)"
  else record pass "GPU tests" "$detail"; fi

  echo; echo "== roundtrip --forward --device $device (the CLI path: hf2mcore, mcore2hf, verify on the device)"
  local m d
  for m in tiny-26b-a4b tiny-e4b-vla; do
    for d in fp32 bf16; do
      if [ "$(left)" -lt 60 ]; then record "not run" "roundtrip --forward $m $d" "time budget"; continue; fi
      if timeout -k 5 "$(cap 60 30)" env LD_LIBRARY_PATH="$ld" "$g4" roundtrip --hf "testdata/$m" --forward --device "$device" \
           --dtype "$d" --quiet >"$work/rt.log" 2>&1; then
        record pass "roundtrip --forward $m $d" "exit 0"
      else
        rc=$?; tail -3 "$work/rt.log"; record FAIL "roundtrip --forward $m $d" "exit $rc: $(tail -1 "$work/rt.log")"
      fi
    done
  done

  echo; echo "== parity and timing: bench/gpu_parity.py"
  local py synth tiny="tiny-e2b,tiny-e4b,tiny-26b-a4b,tiny-31b,tiny-e4b-vla,tiny-26b-a4b-vl"
  if [ "$device" = cuda ]; then
    py=${G4_GPU_CHECK_PYTHON:-python3}
    synth=${G4_GPU_CHECK_SYNTH-26b-a4b:4,31b:4,26b-a4b:8,31b:8}
  else
    if [ -z "${G4_GPU_CHECK_PYTHON:-}" ] && ! ls "${XDG_CACHE_HOME:-$HOME/.cache}"/g4convert/venv-*/.complete >/dev/null 2>&1; then
      echo "gpu_check run: the project venv is not ready (bin/pyenv has not completed); set G4_GPU_CHECK_PYTHON"; exit 1
    fi
    py=${G4_GPU_CHECK_PYTHON:-$("$root/bin/pyenv")/bin/python}
    synth=${G4_GPU_CHECK_SYNTH-}
  fi
  local pbudget=$(( $(left) - 15 )) prc=0
  if [ "$pbudget" -lt 30 ]; then
    record "not run" "parity and timing" "time budget spent before it"
  else
    PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 timeout -k 10 "$((pbudget + 5))" "$py" "$root/bench/gpu_parity.py" --g4 "$g4" --ld-path "$ld" --device "$device" \
      --tiny "$tiny" --bf16-info tiny-e4b-vla,tiny-26b-a4b-vl --synth "$synth" --tokens "${G4_GPU_CHECK_TOKENS:-128}" \
      --work "$work/parity" --budget "$pbudget" \
      --markdown "$out/gpu-parity.md" --json "$out/gpu-parity.json" || prc=$?
    case $prc in
      0) record pass "parity and timing" "every comparison passed (gpu-parity.md)" ;;
      3) record "not run" "parity and timing (part)" "nothing failed; see 'Not run' below" ;;
      1) record FAIL "parity and timing" "see the NO rows and Errors below" ;;
      *) record FAIL "parity and timing" "gpu_parity.py exited $prc$( [ "$prc" = 124 ] && echo ': past its time limit')" ;;
    esac
  fi

  {
    echo "# GPU check: g4convert --device $device ($(date -u +%FT%TZ))"
    echo
    echo "- machine: ${smi}; $(nproc) cores; $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); $(ldd --version | head -1)"
    echo "- bundle: $(sed -n 1,3p "$bundle/MANIFEST" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
    [ -n "$stale" ] && echo "- **WARNING: $stale**"
    echo "- $(tr '\n' ' ' <<<"$version")"
    echo "- whole check: $((SECONDS - start)) s of a ${budget} s budget"
    [ "$device" = cpu ] && echo "- **DRY RUN on the CPU backend: nothing here ran on a GPU**"
    echo
    echo "| step | result | detail |"
    echo "|---|---|---|"
    printf '%s\n' "${summary[@]}"
    echo
    [ -f "$out/gpu-parity.md" ] && cat "$out/gpu-parity.md"
  } > "$report"
  echo; echo "== summary ($report)"
  printf '%s\n' "${summary[@]}"
  if [ "$failed" = 1 ]; then echo "gpu_check: FAILED"; exit 1; fi
  if [ "$not_run" = 1 ]; then echo "gpu_check: passed, but not everything ran"; exit 3; fi
  echo "gpu_check: PASSED"
}

case $mode in
  prepare) prepare ;;
  run) run_check "$@" ;;
  *) echo "usage: bench/gpu_check.sh prepare | run [--device cpu|cuda]" >&2; exit 2 ;;
esac
