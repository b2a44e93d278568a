"""The security policy at the gateway: fetched from the cloud, verified, enforced, acknowledged.

`agent` polls the cloud and decides whether a release may be installed,
`enforce` puts a release in force (privacy stage, device policy, action
limits), `limits` is the action-rate limiter, `revocation` watches the local
revocation list file, `service` wires these into the gateway.
"""
