"""The web tier's /metrics: requests, latency and queue depth in Prometheus' format."""


def test_metrics_count_requests_and_read_the_queues(app, web_client):
    web_client.get("/login")
    web_client.get("/no-such-page")
    text = web_client.get("/metrics").get_data(as_text=True)
    assert 'sieve_web_requests_total{endpoint="auth.login",method="GET",status="200"}' in text
    assert 'status="404"' in text
    assert 'sieve_web_request_seconds_count{endpoint="auth.login"}' in text
    assert 'sieve_web_queue_depth{queue="filter"} 0.0' in text
