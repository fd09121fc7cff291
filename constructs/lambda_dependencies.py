"""A Lambda function's DependsOn without its role: the role is already a dependency through `Role: GetAtt`."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import CfnResource, IStableListProducer, Lazy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_


def drop_redundant_role_dependency(function: lambda_.IFunction) -> None:
    """CDK makes a function depend on every resource of its role's construct: the role, which `Role: GetAtt`
    already orders (cfn-lint W3005), and the role's policies, which nothing else orders (the function must not
    run before its permissions exist). Keep only the policies, read at synthesis so later grants count too."""
    role = function.role
    cfn_function = function.node.default_child
    if not isinstance(role, iam.Role) or not isinstance(cfn_function, CfnResource):
        return  # an imported role or function: CDK adds no such dependency
    cfn_function.add_override("DependsOn", Lazy.list(_RolePolicies(role), omit_empty=True))


@jsii.implements(IStableListProducer)
class _RolePolicies:
    def __init__(self, role: iam.Role) -> None:
        self._role = role

    def produce(self, *_context: Any) -> list[str]:
        stack = Stack.of(self._role)
        return sorted(stack.resolve(stack.get_logical_id(child)) for child in self._role.node.find_all()
                      if isinstance(child, CfnResource) and not isinstance(child, iam.CfnRole))
