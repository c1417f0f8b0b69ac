"""The web console at ``/console``: the plant, live events, the approvals inbox, a decision's
lineage as a picture, the query workbench and the audit log, for the people in the loop.

One page and its script and style sheet, all served by TwinKG itself (nothing is loaded from
another origin: plants are often air-gapped). The page holds no data of its own: it calls the
same HTTP API with the same credentials, so every permission is checked by the server, whatever
the page shows (decision 0073).
"""
