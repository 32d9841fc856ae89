import pytest

from proposer.redis_store import RedisStore
from tests.proposer.store_contract import StoreContract


class TestRedisStore(StoreContract):
    @pytest.fixture
    def store(self, redis_client):
        return RedisStore(redis_client)
