"Order execution, one chapter per module (`nbs/07_execution.*`): orders and filters, the journal, the backends, reconciliation."
from .orders import *
from .journal import *
from .binance import *
from .paper import *
from .reconcile import *
from .userstream import *
