#!/bin/sh
# Submit an image with curl, then long-poll until the prediction is final.
#   SIEVE_URL=http://127.0.0.1:5000 SIEVE_TOKEN=sieve_... sh api_curl.sh shirt.png
set -eu
url="${SIEVE_URL:-http://127.0.0.1:5000}"
auth="Authorization: Bearer ${SIEVE_TOKEN:?set SIEVE_TOKEN to an API token}"

# 202 Accepted: the Location header names the new prediction.
location=$(curl -sS --fail-with-body -o /dev/null -w '%header{location}' \
  -H "$auth" -H "Idempotency-Key: $(date +%s)-$$" \
  -F "image=@${1:?the image to classify}" -F pipeline=filter \
  "$url/api/v1/predictions")

# Long polls (a stream is in api_client.py): each answers as soon as the prediction is
# final, or after 20 seconds with its state so far.
while :; do
  body=$(curl -sS --fail-with-body -H "$auth" "$url$location?wait=20")
  case "$body" in
    *'"state":"done"'*|*'"state":"rejected"'*|*'"state":"failed"'*|*'"state":"cancelled"'*)
      echo "$body"; break ;;
  esac
done
