"""The original SideQICK user client logs in through an AWS SDK's Cognito client with
``cognito_url`` as its endpoint. botocore's own ``cognito-idp`` client, pointed at our service
root, must parse our answers exactly as it parses Cognito's."""
from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.server.api import Api, World

CLIENT_ID = "sideqick-user-client"   # any id: our service has one user pool


def sdk(root: str):
    return boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=root + "/",
                        aws_access_key_id="unused", aws_secret_access_key="unused",
                        config=Config(retries={"max_attempts": 1}))


def test_sdk_password_login_challenge_refresh_and_api_call(world: World):
    admin, _ = world.user(admin=True)
    created = admin.post("/users", json={"Email": "sdk@lab.test", "FullName": "S D K"}).json()
    idp = sdk(world.service.root)

    first = idp.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=CLIENT_ID,
                              AuthParameters={"USERNAME": "sdk@lab.test",
                                              "PASSWORD": created["TemporaryPassword"]})
    assert first["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    done = idp.respond_to_auth_challenge(
        ClientId=CLIENT_ID, ChallengeName="NEW_PASSWORD_REQUIRED", Session=first["Session"],
        ChallengeResponses={"USERNAME": "sdk@lab.test", "NEW_PASSWORD": "correct-horse-42"})
    tokens = done["AuthenticationResult"]
    assert tokens["TokenType"] == "Bearer" and tokens["ExpiresIn"] > 0

    again = idp.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=CLIENT_ID,
                              AuthParameters={"USERNAME": "sdk@lab.test",
                                              "PASSWORD": "correct-horse-42"})
    refreshed = idp.initiate_auth(AuthFlow="REFRESH_TOKEN_AUTH", ClientId=CLIENT_ID,
                                  AuthParameters={"REFRESH_TOKEN":
                                                  again["AuthenticationResult"]["RefreshToken"]})
    access = refreshed["AuthenticationResult"]["AccessToken"]
    # the token the SDK got is accepted by the API, as the original client uses it
    listing = Api(world.service.url, access, bearer_prefix=False).get("/devices")
    assert listing.status_code == 200 and isinstance(listing.json(), list)


def test_sdk_sees_a_wrong_password_as_cognito_reports_it(world: World):
    admin, _ = world.user(admin=True)
    admin.post("/users", json={"Email": "sdk2@lab.test", "FullName": "S D K"})
    with pytest.raises(ClientError) as caught:
        sdk(world.service.root).initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH", ClientId=CLIENT_ID,
            AuthParameters={"USERNAME": "sdk2@lab.test", "PASSWORD": "not-it"})
    assert caught.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
