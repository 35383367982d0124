import uuid
def test_probe(http, redis_client):
    b = http.base_url
    ea = http.post(f"{b}/v3/endpoints", json={"endpoint_name": "probe-a"}).json()["endpoint_id"]
    fid = http.post(f"{b}/v3/functions", json={"function_code": "x", "function_name": "f"}).json()["function_uuid"]
    r = http.post(f"{b}/v2/submit", json={"tasks": [[fid, ea, "p"], [str(uuid.uuid4()), ea, "p"]]}); print("v2", r.status_code, r.text[:900])
