from tests.labelstudio_server import label_studio_private  # noqa: F401 - the session's shared Label Studio
