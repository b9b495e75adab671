"""Runtime of the experiment's fan-out custom resource (CDK Provider framework).

Entry points: ``fanout.handler.on_event`` and ``fanout.handler.is_complete``. Standard library and
boto3/botocore only; no CDK imports (the asset root is ``lambda/``).
"""
