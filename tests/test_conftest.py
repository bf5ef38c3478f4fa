"""What tests/conftest.py sets up for every test process."""
import boto3


def test_every_session_in_a_test_process_reads_botocores_data_once():
    first, second = boto3.session.Session(region_name="us-east-1"), boto3.session.Session(region_name="eu-west-1")
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    first.client("ssm")
    assert any(key[:2] == ("load_service_model", "ssm") for key in loader._cache), "the first session's ssm model is kept in the shared loader"
