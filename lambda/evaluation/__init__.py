"""Evaluation of a trained run: plan (pure), start (S3 + Batch) and the EventBridge handler that
starts one when a run's training job completes. The CLI's ``rollouts evaluate`` uses the same
modules (``rollouts.operate.evaluation_modules``)."""
