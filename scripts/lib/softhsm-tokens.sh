# Sourced by scripts/demo.sh and scripts/bench-batch.sh: one SoftHSM2
# configuration per "machine" or custodian card, PINs in files only this user
# can read (never on a command line of ours).

new_token() { # dir label -> creates the token
  local dir="$1" label="$2"
  (
    umask 077
    mkdir -p "$dir/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir/tokens" >"$dir/softhsm2.conf"
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"
  )
  SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
}

on_token() { # dir cmd... -> runs cmd with that token's configuration
  local dir="$1"; shift
  SOFTHSM2_CONF="$dir/softhsm2.conf" "$@"
}
