"""Writes Schemathesis dictionaries of the demo story's ids, for .ci/contract.

Random UUIDs name nothing, so most generated requests would end at 404; half
of the time the ids Schemathesis draws are the story's instead (sites, users,
scorecards, objects), found through the API itself with the operator's token.
Prints TOML: `[dictionaries]` and the `[parameters]` that draw from them.

Usage: python3 contract-ids.py <base URL> <demo --json output>
"""

import json
import sys
import urllib.request

base, demo_path = sys.argv[1], sys.argv[2]
demo = json.load(open(demo_path))
operator = next(t["token"] for t in demo["tokens"] if t["name"] == "operator")


def get(path):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {operator}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


sites = sorted(s["site_id"] for s in demo["sites"])
users = sorted({u["user_id"] for s in sites for u in get(f"/v1/sites/{s}/users?limit=1000")["users"]})
scorecards, objects = set(), set()
for user in users:
    for item in get(f"/v1/access/lookup?user_id={user}&limit=10000")["items"]:
        target = item["target"]
        (scorecards if target["type"] == "scorecard" else objects).add(target["id"])
dictionaries = {
    "sites": sites,
    "users": users,
    "scorecards": sorted(scorecards),
    "objects": sorted(objects),
    "targets": sorted(scorecards | objects),
}
if not all(dictionaries.values()):
    sys.exit(f"the demo story has no ids of some kind: { {k: len(v) for k, v in dictionaries.items()} }")
parameters = {
    "sites": [
        "path.site_id", "query.site", "query.site_id", "query.partner", "query.partner_id",
        "query.partner_site", "body.site_id", "body.partner", "body.from", "body.to",
        "body.parent", "body.from_site", "body.origin_site", "body.owner_site", "body.group_site",
        "body.model_site",
    ],
    "users": ["query.user_id", "body.user_id", "body.from_user", "body.model_user"],
    "scorecards": ["path.scorecard_id", "body.scorecard_id"],
    "objects": ["body.object_id", "body.container", "body.into_object"],
    "targets": ["query.target_id"],
}
print("\n[dictionaries]")
for name, values in dictionaries.items():
    print(f"{name} = {{ values = {json.dumps(values)} }}")
print("\n[parameters]")
for name, keys in parameters.items():
    for key in keys:
        print(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
