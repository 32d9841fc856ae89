import pytest

from proposer.store import MemoryStore
from tests.proposer.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self):
        return MemoryStore()
