import time
from tests.http.test_round_trips import *  # noqa

async def test_dbg(counted, public_client, user):
    http, trips = counted
    code, verifier, _ = await authorize(http, public_client, user)
    tokens = (await exchange(http, public_client, code, verifier)).json()
    rt = tokens["refresh_token"]
    ctx = http.app.state.ctx
    print("STATS0", ctx.pool.get_stats())
    before = trips.count
    t = time.perf_counter()
    for _ in range(200):
        r = await refresh(http, public_client, rt)
        rt = r.json()["refresh_token"]
    print("TIME", time.perf_counter() - t, "TRIPS", (trips.count - before) / 200)
    print("STATS1", ctx.pool.get_stats())
