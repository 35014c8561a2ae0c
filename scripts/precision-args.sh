# Sourced by train-net.sh and run-plan.sh: PRECISION=fp32|tf32 and DETERMINISTIC=1|0 from the
# environment as `transfer` options, appended to the array `args`. $1 names the script in errors.
[[ -n "${PRECISION:-}" ]] && args+=(--precision "$PRECISION")
case ${DETERMINISTIC:-} in
  "") ;;
  1) args+=(--deterministic) ;;
  0) args+=(--no-deterministic) ;;
  *) echo "$1: error: DETERMINISTIC='$DETERMINISTIC' must be 0 or 1" >&2; exit 2 ;;
esac
