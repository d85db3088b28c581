#!/usr/bin/env python3
"""A rolling upgrade by hand, on loopback: a cluster of three with n1 on the OLD build and n2, n3
on the NEW one, writes through each node read from each; then n1 is stopped and started again
on the NEW build over its data directory, and everything is read again.

    python3 scripts/rolling_upgrade.py OLD_BINARY NEW_BINARY

Build the old binary from the release before (a git worktree at its commit, its own target
directory). Processes are started on free loopback ports and stopped by PID."""
import json, signal, socket, subprocess, sys, tempfile, time, urllib.request
OLD, NEW = sys.argv[1], sys.argv[2]
tmp=tempfile.mkdtemp(prefix="upgrade-")
def free():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
ports={id:(free(),free()) for id in ("n1","n2","n3")}
procs={}
def start(id, binary):
    l,h=ports[id]
    args=[binary,"node","--id",id,"--data-dir",f"{tmp}/{id}","--listen",f"127.0.0.1:{l}","--http",f"127.0.0.1:{h}"]
    other = "n2" if id == "n1" else "n1"
    args+=["--join",f"127.0.0.1:{ports[other][0]}"]
    log=open(f"{tmp}/{id}.log","ab")
    procs[id]=subprocess.Popen(args,stdout=log,stderr=log)
def req(id,method,path,body=None):
    h=ports[id][1]
    r=urllib.request.Request(f"http://127.0.0.1:{h}{path}",data=body,method=method)
    try:
        with urllib.request.urlopen(r,timeout=5) as resp: return resp.status, resp.read()
    except urllib.error.HTTPError as e: return e.code, e.read()
    except Exception as e: return 0, str(e).encode()
def cluster(id):
    st,b=req(id,"GET","/cluster")
    return json.loads(b) if st==200 else None
def all_up():
    for id in procs:
        c=cluster(id)
        if not c or sorted(m["id"] for m in c["members"] if m["state"]=="up")!=["n1","n2","n3"]: return False
    return True
def wait(f,what,t=30):
    end=time.time()+t
    while time.time()<end:
        if f(): return
        time.sleep(0.2)
    print("FAILED waiting for",what); [p.kill() for p in procs.values()]; sys.exit(1)
try:
    start("n1",OLD); start("n2",NEW); start("n3",NEW)
    wait(all_up,"a mixed cluster up")
    c=cluster("n2"); print("n2 sees:",[(m["id"],m["state"],m.get("protocol")) for m in c["members"]])
    for i,id in enumerate(["n1","n2","n3"]):
        st,_=req(id,"PUT",f"/kv/mixed-{i}?w=all",f"v{i}".encode()); assert st in (200,204),(id,st)
    for id in procs:
        for i in range(3):
            st,b=req(id,"GET",f"/kv/mixed-{i}?r=all"); assert b==f"v{i}".encode(),(id,i,st,b)
    print("mixed cluster (old n1 at v3, new n2, n3 at v4): writes at w=all through each read at r=all from each: ok")
    procs["n1"].send_signal(signal.SIGINT); procs["n1"].wait(20)
    start("n1",NEW)
    wait(all_up,"the upgraded cluster up")
    time.sleep(1)
    c=cluster("n2"); print("after upgrading n1, n2 sees:",[(m["id"],m["state"],m.get("protocol")) for m in c["members"]])
    for id in procs:
        for i in range(3):
            st,b=req(id,"GET",f"/kv/mixed-{i}?r=all"); assert b==f"v{i}".encode(),(id,i,st,b)
        st,_=req(id,"PUT",f"/kv/after-{id}?w=all",b"x"); assert st in (200,204)
    print("upgraded n1 reads its old data directory; every key readable at r=all from every node; w=all writes ok")
finally:
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for id,p in procs.items():
        try: print(id,"exit",p.wait(20))
        except Exception: p.kill()
