from flask_restx import Namespace

ns = Namespace("financial_data")
