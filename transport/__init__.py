"""Transport layer: bytes and messages between processes (framed pipes, shm pools, shm channels).

It knows nothing of processes or services. Installed as `dragon.transport`.
"""

from ._errors import ChannelDestroyed as ChannelDestroyed
from ._errors import ChannelEmpty as ChannelEmpty
from ._errors import ChannelError as ChannelError
from ._errors import ChannelFull as ChannelFull
from ._errors import DragonError as DragonError
from ._errors import PoolError as PoolError
from ._errors import PoolExhausted as PoolExhausted
from ._errors import ProtocolError as ProtocolError
