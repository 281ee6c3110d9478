# aws-kms: a Python (boto3) manager compiled to a C-ABI plugin by plugins/_pyembed.
include plugins/_pyembed/pyembed.mk
$(eval $(call km_pyembed_plugin,plugins/aws_kms,aws-kms))
