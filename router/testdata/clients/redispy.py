"""Drives a node with redis-py, unchanged, as an application would (run by TestRedisPy).

Usage: redispy.py HOST PORT. Prints one line per protocol tried and exits non-zero on the
first reply that is not what Redis answers.
"""
import sys
import time

import redis


def check(what, got, want):
    if got != want:
        sys.exit("%s: got %r, want %r" % (what, got, want))


def run(host, port, protocol):
    kw = {"host": host, "port": port, "decode_responses": True, "socket_timeout": 5}
    if protocol == 3:
        kw["protocol"] = 3
    r = redis.Redis(**kw)
    check("ping", r.ping(), True)
    check("set", r.set("py:k", "v"), True)
    check("get", r.get("py:k"), "v")
    check("get missing", r.get("py:missing"), None)
    check("incr", r.incr("py:n", 5), 5)
    check("mset", r.mset({"py:a": "1", "py:b": "2", "py:c": "3"}), True)
    check("mget", r.mget(["py:a", "py:missing", "py:c"]), ["1", None, "3"])
    check("hset", r.hset("py:h", mapping={"f": "1", "g": "2"}), 2)
    check("hgetall", r.hgetall("py:h"), {"f": "1", "g": "2"})
    check("zadd", r.zadd("py:z", {"a": 1, "b": 2.5}), 2)
    check("zscore", r.zscore("py:z", "b"), 2.5)
    check("zrange withscores", r.zrange("py:z", 0, -1, withscores=True), [("a", 1.0), ("b", 2.5)])
    check("zincrby", r.zincrby("py:z", 1, "a"), 2.0)
    check("sadd", r.sadd("py:s", "x", "y"), 2)
    check("smembers", r.smembers("py:s"), {"x", "y"})
    check("rpush", r.rpush("py:l", "a", "b", "c"), 3)
    check("lrange", r.lrange("py:l", 0, -1), ["a", "b", "c"])
    check("blpop", r.blpop(["py:l"], timeout=1), ("py:l", "a") if protocol == 2 else ["py:l", "a"])
    check("blpop timeout", r.blpop(["py:empty"], timeout=0.05), None)
    check("xadd", r.xadd("py:st", {"f": "v"}, id="1-1"), "1-1")
    check("xrange", r.xrange("py:st"), [("1-1", {"f": "v"})])
    check("expire", r.expire("py:k", 100), True)
    check("ttl", r.ttl("py:k"), 100)
    check("eval", r.eval("return redis.call('GET', KEYS[1])", 1, "py:k"), "v")
    check("dbsize", r.dbsize() >= 9, True)
    check("keys", sorted(r.keys("py:[abc]")), ["py:a", "py:b", "py:c"])
    check("scan_iter", sorted(r.scan_iter("py:[abc]")), ["py:a", "py:b", "py:c"])
    p = r.pipeline(transaction=False)
    p.set("py:p1", "1").incr("py:p1").get("py:p1")
    check("pipeline", p.execute(), [True, 2, "2"])
    t = r.pipeline(transaction=True)
    t.set("{py}t", "1").incr("{py}t").get("{py}t")
    check("transaction", t.execute(), [True, 2, "2"])
    check("info", "redis_version" in r.info("server"), True)
    check("client setname", r.client_setname("pyclient"), True)
    check("client getname", r.client_getname(), "pyclient")

    ps = r.pubsub()
    ps.subscribe("py:ch")
    msg = ps.get_message(timeout=5)
    check("subscribe", (msg["type"], msg["channel"], msg["data"]), ("subscribe", "py:ch", 1))
    pub = redis.Redis(**kw)
    deadline = time.time() + 5
    while pub.publish("py:ch", "hello") == 0:  # counted once the subscription is in place
        if time.time() > deadline:
            sys.exit("publish reached no subscriber")
        time.sleep(0.01)
    msg = ps.get_message(timeout=5)
    check("message", (msg["type"], msg["channel"], msg["data"]), ("message", "py:ch", "hello"))
    ps.unsubscribe("py:ch")
    msg = ps.get_message(timeout=5)
    check("unsubscribe", (msg["type"], msg["channel"]), ("unsubscribe", "py:ch"))
    ps.close()
    pub.close()
    r.delete("py:k", "py:n", "py:a", "py:b", "py:c", "py:h", "py:z", "py:s", "py:l", "py:st", "py:p1", "{py}t")
    r.close()
    print("redis-py %s RESP%d: ok" % (redis.__version__, protocol))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    run(host, port, 2)
    if int(redis.__version__.split(".")[0]) >= 5:
        run(host, port, 3)


main()
