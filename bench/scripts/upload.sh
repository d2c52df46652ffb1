# Second round trip, only when the artifact differs: the payload follows this
# script on stdin. The body is one { } block, so bash has read all of it before
# head runs, and head gets exactly the payload.
# Inputs: NB_ROOT NB_ARTIFACT_SHA NB_ARTIFACT_SIZE
{
set -eu
a="$NB_ROOT/opt/nodeboot/artifact.bin"; t="$a.nb.$$"
head -c "$NB_ARTIFACT_SIZE" > "$t"
if [ "$(sha256sum "$t" | cut -d' ' -f1)" != "$NB_ARTIFACT_SHA" ]; then rm -f "$t"; echo mismatch; exit 3; fi
mv -f "$t" "$a"; echo written
exit 0
}
