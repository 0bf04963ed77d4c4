"""Edge OTA on The Update Framework (python-tuf): the publisher and the device agent.

Publisher (CI, the pipeline's edge-publish step)::

    from detpipe.edge.keys import keygen
    from detpipe.edge.publish import PublishConfig, publish_target, rollback_to, set_rollout

    keygen(Path("ota-keys"))                                       # once per fleet
    publish_target(open_store("s3://detpipe"),
                   PublishConfig("cpu", "2", Path("model.onnx"), "onnx", Path("ota-keys"), rollout_pct=10))

Device::

    from detpipe.edge.agent import Agent, AgentConfig
    cfg = AgentConfig("s3://detpipe", "cpu", "cam-17", Path("root.json"), Path("/var/lib/detpipe-edge"))
    Agent(cfg).run()

Modules: ``keys`` (ed25519 keys, root v1), ``rootchain`` (every root version in the keys
directory: ``N.root.json`` and the newest as ``root.json``; each store gets the versions it
lacks), ``repository`` (a ``tuf.repository.Repository`` persisted in the store),
``targets`` (target paths and their signed custom metadata), ``publish`` (upload + sign,
rollout, signed rollback), ``rotate`` (key rotation), ``trust`` (the ``tuf.ngclient.Updater``
refresh), ``fetcher`` (s3/https/file transport with resume), ``rollout`` (staged-rollout
rules), ``slots`` (A/B slots, atomic ``current``), ``health`` (test inference), ``engine``
(build-on-device cache), ``reload`` (the server's load call, with its bearer token),
``agent`` (the cycle and the loop).
"""
