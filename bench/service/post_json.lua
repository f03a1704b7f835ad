-- wrk script for `scripts/bench service`: every request is a POST of a
-- JSON body (default: one single-item job, [{"a":1}]); the URL given to wrk
-- carries the path and query (e.g. /v1/jobs?pipeline=small&wait=1).
-- WRK_BODY overrides the body.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or '[{"a":1}]'
wrk.headers["Content-Type"] = "application/json"
