"A loopback fake of Binance USDⓈ-M futures, one chapter per module (`nbs/90_fakex.*`); importing it loads every chapter."
from .core import *
from .faults import *
from .market import *
from .streams import *
from .trading import *
